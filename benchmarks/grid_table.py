"""The latent-grid results of benchmarks/results/grid/ beside SIREN (sci v2) and the classical codecs at
the same target, as a markdown table (docs/benchmarks.md §7).

    python benchmarks/grid_table.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
OTHERS = {"sci (SIREN v2, 800 steps)": ("neural", "sci"), "hevc": ("classical", "hevc"),
          "h264": ("classical", "h264"), "jpeg2000": ("classical", "jpeg2000")}


def _other(kind: str, codec: str, volume: str, bpv: float) -> float | None:
    results = json.loads((RESULTS / kind / "results.json").read_text())["results"]
    for r in results:
        if r["codec"] == codec and r["volume"] == volume and abs(r["target_bpv"] - bpv) < 1e-9:
            return float(r["psnr_data"])
    return None


def main() -> None:
    rows = []
    for path in sorted((RESULTS / "grid").glob("*_bpv*_*s.json")):
        match = re.match(r"(.+)_bpv([0-9.]+)_(\d+)s\.json", path.name)
        if not match or not path.stat().st_size:
            continue
        volume, bpv, seconds = match.group(1), float(match.group(2)), int(match.group(3))
        grid = json.loads(path.read_text())
        others = [_other(kind, codec, volume, bpv) for kind, codec in OTHERS.values()]
        cells = ["—" if v is None else f"{v:.2f}" for v in others]
        rows.append(f"| {volume} | {bpv:g} | {grid['bpv']:.4f} | **{grid['psnr_data']:.2f}** | "
                    f"{grid['ssim']:.3f} | {grid['steps']} | {seconds} | " + " | ".join(cells) + " |")
    print("| volume | target BPV | grid BPV | grid PSNR | grid SSIM | steps | fit limit s | "
          + " | ".join(OTHERS) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(OTHERS))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
