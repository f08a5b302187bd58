"""The SCI paper's ablations (Table 2) on one volume: partition, funnel ratio, allocation rule.

Same volume, same budget, same steps for every variant; writes OUT/ablations.json and
OUT/ablations.md (a markdown table). Progress bar on stderr.

    python benchmarks/ablations.py ../shared/data/ct_aorta_totalseg.tif --bpv 0.1 --steps 2000 \
        --out bench-out/ablations
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from napari_sci.bench.ablation import (
    VARIANTS,
    AblationRow,
    AblationSettings,
    markdown_table,
    run_ablation,
)
from napari_sci.bench.cli import _crop
from napari_sci.bench.results import machine_info
from napari_sci.bench.settings import BenchSettings
from napari_sci.core.volume_files import read_volume

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_SCI_DATA", REPO.parent / "shared" / "data"))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("volume", nargs="?", type=Path, default=DATA / "ct_aorta_totalseg.tif")
    p.add_argument("--bpv", type=float, default=0.1, help="the budget of every variant (0.1)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--time-limit", type=float)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", help="z0:z1,y0:y1,x0:x1 (smoke runs)")
    p.add_argument("--out", type=Path, default=REPO / "bench-out" / "ablations")
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    args = parse(argv)
    volume, _ = read_volume(args.volume)
    if args.crop:
        volume = np.ascontiguousarray(volume[_crop(args.crop, volume.ndim)])
    settings = AblationSettings(bpv=args.bpv, steps=args.steps, time_limit=args.time_limit,
                                device=args.device, seed=args.seed)
    started = time.perf_counter()
    with tqdm(total=len(VARIANTS), file=sys.stderr, unit="variant", desc="ablations") as bar:
        def done(row: AblationRow) -> None:
            bar.set_description(f"done {row.factor}: {row.label}")
            bar.update(1)

        rows = run_ablation(volume, settings, on_row=done)
    shape = "×".join(map(str, volume.shape))
    title = (f"{args.volume.name}{' crop ' + args.crop if args.crop else ''} ({shape} {volume.dtype}), "
             f"{args.bpv:g} BPV, {args.steps} steps")
    report = {"volume": str(args.volume), "crop": args.crop, "shape": list(volume.shape),
              "dtype": str(volume.dtype), "settings": dataclasses.asdict(settings),
              "machine": machine_info(BenchSettings()), "seconds": time.perf_counter() - started,
              "rows": [dataclasses.asdict(r) for r in rows]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablations.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (args.out / "ablations.md").write_text(markdown_table(rows, title), encoding="utf-8")
    print(markdown_table(rows, title))
    return 0


if __name__ == "__main__":
    sys.exit(run())
