"""The latent-grid results of benchmarks/results/grid/ beside SIREN (sci v2) and the classical codecs at
the same targets, as markdown tables (docs/benchmarks.md §7): PSNR per volume and BPV, then BD-rate
against HEVC per volume over the BPVs both were measured at.

    python benchmarks/grid_table.py [--limit-01 SECONDS]

Where a volume was fitted at one BPV with several time limits, the table shows each; the BD-rate uses,
per BPV, the run with the shortest limit that every BPV of that volume has (one fitting budget per
curve), so the curve is not a mix of long and short fits.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

from napari_sci.core.metrics import bd_rate

RESULTS = Path(__file__).resolve().parent / "results"
OTHERS = {"sci (SIREN v2, 800 steps)": ("neural", "sci"), "hevc": ("classical", "hevc"),
          "h264": ("classical", "h264"), "sperr": ("sperr", "sperr"), "jpeg2000": ("classical", "jpeg2000")}


def _results(kind: str) -> list[dict]:
    path = RESULTS / kind / "results.json"
    return json.loads(path.read_text())["results"] if path.exists() else []


def _other(kind: str, codec: str, volume: str, bpv: float) -> dict | None:
    for r in _results(kind):
        if r["codec"] == codec and r["volume"] == volume and abs(r["target_bpv"] - bpv) < 1e-9 \
                and r.get("status", "ok") == "ok":
            return r
    return None


def _grid_runs() -> dict[str, dict[tuple[float, int], dict]]:
    runs: dict[str, dict[tuple[float, int], dict]] = defaultdict(dict)
    for path in sorted((RESULTS / "grid").glob("*_bpv*_*s.json")):
        match = re.match(r"(.+)_bpv([0-9.]+)_(\d+)s\.json", path.name)
        if match and path.stat().st_size:
            runs[match.group(1)][(float(match.group(2)), int(match.group(3)))] = json.loads(path.read_text())
    return runs


def _curve_runs(runs: dict[tuple[float, int], dict]) -> dict[float, dict]:
    """Per BPV the run of one common time limit (the shortest one every BPV has, else the shortest)."""
    bpvs = sorted({b for b, _ in runs})
    limits = sorted({s for _, s in runs})
    common = [s for s in limits if all((b, s) in runs for b in bpvs)]
    chosen = {}
    for b in bpvs:
        options = [s for bb, s in runs if bb == b]
        limit = common[0] if common else min(options)
        chosen[b] = runs[(b, limit)] if (b, limit) in runs else runs[(b, min(options))]
    return chosen


def _points(kind: str, codec: str, volume: str, bpvs: list[float]) -> tuple[list[float], list[float]]:
    found = [f for f in (_other(kind, codec, volume, b) for b in bpvs) if f is not None]
    return [f["bpv"] for f in found], [f["psnr_data"] for f in found]


def main() -> None:
    runs = _grid_runs()
    print("| volume | target BPV | grid BPV | grid PSNR | grid SSIM | steps | fit limit s | "
          + " | ".join(OTHERS) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(OTHERS))
    for volume in sorted(runs):
        for (bpv, seconds), grid in sorted(runs[volume].items()):
            others = [_other(kind, codec, volume, bpv) for kind, codec in OTHERS.values()]
            cells = ["—" if o is None else f"{o['psnr_data']:.2f}" for o in others]
            quality = "lossless" if math.isinf(grid["psnr_data"]) else f"{grid['psnr_data']:.2f}"
            print(f"| {volume} | {bpv:g} | {grid['bpv']:.4f} | **{quality}** | "
                  f"{grid['ssim']:.3f} | {grid['steps']} | {seconds} | " + " | ".join(cells) + " |")
    print()
    print("| volume | BPVs | grid vs HEVC BD-rate % | SIREN v2 vs HEVC % | SPERR vs HEVC % "
          "| grid vs SPERR % |")
    print("|---|---|---|---|---|---|")
    for volume in sorted(runs):
        curve = _curve_runs(runs[volume])
        bpvs = sorted(curve)
        if len(bpvs) < 2:
            continue

        grid = ([curve[b]["bpv"] for b in bpvs], [curve[b]["psnr_data"] for b in bpvs])
        hevc, sperr, siren = (_points(kind, codec, volume, bpvs) for kind, codec in
                              (("classical", "hevc"), ("sperr", "sperr"), ("neural", "sci")))

        def cell(value: float) -> str:
            return "n/a (no shared PSNR range)" if math.isnan(value) else f"{value:+.1f}"

        print(f"| {volume} | {', '.join(f'{b:g}' for b in bpvs)} | {cell(bd_rate(*grid, *hevc))} | "
              f"{cell(bd_rate(*siren, *hevc))} | {cell(bd_rate(*sperr, *hevc))} | "
              f"{cell(bd_rate(*grid, *sperr))} |")


if __name__ == "__main__":
    main()
