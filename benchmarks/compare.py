"""Head-to-head tables from benchmark results: napari-sci against its baselines at equal BPV.

    python benchmarks/compare.py benchmarks/results/neural/results.json \
        benchmarks/results/classical/results.json --out benchmarks/results/neural/compare

For every volume and target BPV measured by ``sci``, one row with each codec's data-range PSNR (and
SSIM for ``sci``), then the mean difference of ``sci`` against each other codec over the volumes, per
BPV and overall. Writes ``compare.md`` and ``compare.json`` into ``--out``. The figures are read from
the JSON files; nothing is typed by hand. ``compare_detail.md`` lists every figure (both PSNRs, SSIM,
blocks, seconds) of the ``--detail`` codecs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from napari_sci.bench.results import BenchReport, BenchResult

REFERENCE = "sci"


def _index(reports: Sequence[BenchReport]) -> dict[tuple[str, str, float], BenchResult]:
    return {(r.codec, r.volume, r.target_bpv): r for report in reports for r in report.results if r.ok}


def _blocks(result: BenchResult) -> int | None:
    found = re.match(r"(\d+) blocks", result.notes[0]) if result.notes else None
    return int(found.group(1)) if found else None


def rows(index: dict[tuple[str, str, float], BenchResult], codecs: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (volume, BPV) that the reference codec measured."""
    out = []
    for (codec, volume, bpv), ref in sorted(index.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if codec != REFERENCE:
            continue
        row: dict[str, Any] = {"volume": volume, "target_bpv": bpv, "sci_bpv": ref.bpv,
                               "sci_psnr_dtype": ref.psnr_dtype, "sci_blocks": _blocks(ref)}
        for name in (REFERENCE, *codecs):
            other = index.get((name, volume, bpv))
            row[f"{name}_psnr"] = None if other is None else other.psnr_data
            row[f"{name}_ssim"] = None if other is None else other.ssim
            row[f"{name}_seconds"] = None if other is None else other.compress_seconds
        out.append(row)
    return out


def gains(table: list[dict[str, Any]], codecs: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean PSNR of ``sci`` minus each codec's, per target BPV and over all of them."""
    out: dict[str, dict[str, float]] = {}
    for name in codecs:
        pairs = [(r["target_bpv"], r[f"{REFERENCE}_psnr"] - r[f"{name}_psnr"]) for r in table
                 if r[f"{name}_psnr"] is not None and r[f"{REFERENCE}_psnr"] is not None]
        if not pairs:
            continue
        per = {f"{bpv:g}": mean(d for b, d in pairs if b == bpv) for bpv in sorted({b for b, _ in pairs})}
        out[name] = {**per, "all": mean(d for _, d in pairs)}
    return out


def detail(index: dict[tuple[str, str, float], BenchResult], codecs: Sequence[str]) -> str:
    """Every figure of the given codecs, one row per (volume, BPV, codec) — the issue-2 table."""
    lines = ["| volume | target BPV | codec | file BPV | PSNR data | PSNR dtype | SSIM | blocks | seconds |",
             "|" + "---|" * 9]
    for (codec, volume, bpv), r in sorted(index.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if codec in codecs:
            lines.append(f"| {volume} | {bpv:g} | {codec} | {_f(r.bpv, 4)} | {_f(r.psnr_data)} "
                         f"| {_f(r.psnr_dtype)} | {_f(r.ssim, 4)} | {_blocks(r) or '–'} "
                         f"| {_f(r.compress_seconds, 0)} |")
    return "\n".join(lines) + "\n"


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(table: list[dict[str, Any]], codecs: Sequence[str], delta: dict[str, dict[str, float]],
             command: str) -> str:
    head = (["volume", "BPV", "sci PSNR", "sci SSIM", "blocks", "sci s"]
            + [f"{c} PSNR" for c in codecs])
    lines = [f"Made by `{command}`.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [r["volume"], f"{r['target_bpv']:g}", _f(r["sci_psnr"]), _f(r["sci_ssim"], 4),
                 str(r["sci_blocks"] or "–"), _f(r["sci_seconds"], 0)]
        cells += [_f(r[f"{c}_psnr"]) for c in codecs]
        lines.append("| " + " | ".join(cells) + " |")
    bpvs = sorted({f"{r['target_bpv']:g}" for r in table}, key=float)
    lines += ["", "Mean PSNR difference, sci minus the codec (dB, data range; positive: sci is better):",
              "", "| codec | " + " | ".join(f"BPV {b}" for b in bpvs) + " | all |",
              "|---|" + "---|" * (len(bpvs) + 1)]
    for name, per in delta.items():
        lines.append(f"| {name} | " + " | ".join(_f(per.get(b)) for b in bpvs) + f" | {_f(per['all'])} |")
    return "\n".join(lines) + "\n"


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--codecs", nargs="+", default=["siren", "sci-v1", "hevc", "h264", "jpeg2000"])
    p.add_argument("--detail", nargs="*", default=[REFERENCE, "siren", "sci-v1"],
                   help="codecs listed with every figure in compare_detail.md")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    reports = [BenchReport.from_json(path.read_text(encoding="utf-8")) for path in args.results]
    index = _index(reports)
    codecs = [c for c in args.codecs if any(k[0] == c for k in index)]
    table = rows(index, codecs)
    delta = gains(table, codecs)
    command = " ".join(["python", "benchmarks/compare.py", *(argv if argv is not None else sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps({"rows": table, "mean_gain_db": delta}, indent=1)
                                           + "\n", encoding="utf-8")
    text = markdown(table, codecs, delta, command)
    (args.out / "compare.md").write_text(text, encoding="utf-8")
    (args.out / "compare_detail.md").write_text(detail(index, args.detail), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run())
