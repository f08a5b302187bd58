"""Re-make the markdown tables and the plots of a finished run from its results.json.

    python benchmarks/report.py benchmarks/results/classical/results.json \
        --images docs/images/bench/classical --command "python benchmarks/run_all.py ..."

Writes results.md next to the JSON (image links relative to it) and the PNGs into --images (default:
next to the JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_sci.bench.markdown import report_markdown
from napari_sci.bench.plots import plot_report
from napari_sci.bench.results import BenchReport


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="a results.json written by napari-sci bench")
    p.add_argument("--images", type=Path, help="folder for the PNGs (default: next to the JSON)")
    p.add_argument("--command", help="the command that made the run, quoted in results.md")
    args = p.parse_args(argv)
    report = BenchReport.from_json(args.results.read_text(encoding="utf-8"))
    folder = args.images or args.results.parent
    plots = plot_report(report, folder)
    links = [os.path.relpath(path, args.results.parent) for path in plots]
    text = report_markdown(report, args.command, links)
    (args.results.parent / "results.md").write_text(text, encoding="utf-8")
    print("wrote " + ", ".join(map(str, [*plots, args.results.parent / "results.md"])))
    return 0


if __name__ == "__main__":
    sys.exit(run())
