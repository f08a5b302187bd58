"""Re-make the markdown tables and the plots of a finished run from its results.json.

    python benchmarks/report.py benchmarks/results/classical/results.json \
        --images docs/images/bench/classical --command "python benchmarks/run_all.py ..."
    python benchmarks/report.py RUN1/results.json RUN2/results.json --merge-to benchmarks/results/neural

Writes results.md next to the JSON (image links relative to it) and the PNGs into --images (default:
next to the JSON). Several JSON files (runs made side by side, one volume each) are merged into
``--merge-to``/results.json first.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_sci.bench.markdown import report_markdown
from napari_sci.bench.plots import plot_report
from napari_sci.bench.results import BenchReport, merge_reports


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, nargs="+", help="results.json files written by napari-sci bench")
    p.add_argument("--merge-to", type=Path, help="folder for the merged results.json (several inputs)")
    p.add_argument("--images", type=Path, help="folder for the PNGs (default: next to the JSON)")
    p.add_argument("--command", help="the command that made the run, quoted in results.md")
    args = p.parse_args(argv)
    reports = [BenchReport.from_json(path.read_text(encoding="utf-8")) for path in args.results]
    if len(reports) > 1 and args.merge_to is None:
        p.error("several results files need --merge-to FOLDER")
    if args.merge_to is not None:
        report = merge_reports(reports)
        args.merge_to.mkdir(parents=True, exist_ok=True)
        results = args.merge_to / "results.json"
        results.write_text(report.to_json() + "\n", encoding="utf-8")
    else:
        report, results = reports[0], args.results[0]
    folder = args.images or results.parent
    plots = plot_report(report, folder)
    links = [os.path.relpath(path, results.parent) for path in plots]
    text = report_markdown(report, args.command, links)
    (results.parent / "results.md").write_text(text, encoding="utf-8")
    print("wrote " + ", ".join(map(str, [results, *plots, results.parent / "results.md"])))
    return 0


if __name__ == "__main__":
    sys.exit(run())
