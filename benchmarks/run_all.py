"""The full benchmark suite: every volume of the data folder, every codec, BPV 0.02 0.05 0.1 0.25.

Writes OUT/results.json and OUT/<volume>.png + OUT/average.png (PSNR over the data range and SSIM
against BPV) through ``napari-sci bench``; with ``--images`` the PNGs are also copied there (for
docs/benchmarks.md). Progress bar on stderr.

    python benchmarks/run_all.py --codecs classical --out benchmarks/results/classical \
        --images docs/images/bench/classical
    python benchmarks/run_all.py --codecs all --steps 2000 --device cuda --out bench-out/full
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from napari_sci.bench.cli import GROUPS
from napari_sci.bench.settings import CODEC_NAMES, DEFAULT_BPVS
from napari_sci.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_SCI_DATA", REPO.parent / "shared" / "data"))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help=f"folder of .tif volumes (default {DATA})")
    p.add_argument("--volumes", nargs="+", help="only these file names (default: every .tif there)")
    p.add_argument("--codecs", nargs="+", default=["all"], choices=[*CODEC_NAMES, *GROUPS])
    p.add_argument("--bpv", nargs="+", type=float, default=list(DEFAULT_BPVS))
    p.add_argument("--out", type=Path, default=REPO / "bench-out" / "full")
    p.add_argument("--images", type=Path, help="also copy the PNGs to this folder")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--time-limit", type=float)
    p.add_argument("--device", default="auto")
    p.add_argument("--crop", help="z0:z1,y0:y1,x0:x1 applied to every volume (smoke runs)")
    p.add_argument("-q", "--quiet", action="store_true")
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = args.volumes or sorted(p.name for p in args.data.glob("*.tif"))
    if not names:
        print(f"no .tif volumes in {args.data}", file=sys.stderr)
        return 1
    command = ["bench", *(str(args.data / n) for n in names), "--bpv", *map(str, args.bpv),
               "--codecs", *args.codecs, "--out", str(args.out), "--steps", str(args.steps),
               "--device", args.device]
    command += ["--time-limit", str(args.time_limit)] if args.time_limit else []
    command += ["--crop", args.crop] if args.crop else []
    command += ["-q"] if args.quiet else []
    print("napari-sci " + " ".join(command), file=sys.stderr)
    status = main(command)
    if status == 0 and args.images:
        args.images.mkdir(parents=True, exist_ok=True)
        for png in args.out.glob("*.png"):
            shutil.copy2(png, args.images / png.name)
    return status


if __name__ == "__main__":
    sys.exit(run())
