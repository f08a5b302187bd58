"""``napari-sci bench``: compare codecs at equal bits per voxel; JSON + PNG rate-distortion plots.

Wired into :mod:`napari_sci.cli` by :func:`add_bench_parser`; :func:`run_bench` does the work. Imports
here stay light (no torch, imagecodecs or matplotlib until a run needs them).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from napari_sci.bench.settings import CLASSICAL, CODEC_NAMES, NEURAL, BenchSettings
from napari_sci.errors import SciError

GROUPS = {"all": CODEC_NAMES, "classical": CLASSICAL, "neural": NEURAL}


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    bench = BenchSettings  # the defaults
    p = sub.add_parser(
        "bench", help="compare napari-sci with classical and neural codecs at equal BPV",
        description="Drive every codec to each target bits-per-voxel (every byte its decoder needs "
                    "counts), measure PSNR/SSIM/Acc with napari-sci's metrics, and write "
                    "OUT/results.json, OUT/results.md and rate-distortion plots OUT/<volume>.png, "
                    "OUT/average.png.")
    p.add_argument("volumes", nargs="+", metavar="VOLUME", help="volumes (.tif/.tiff, .npy, .zarr)")
    p.add_argument("--bpv", type=float, nargs="+", default=list(bench.bpvs),
                   help=f"target bits per voxel (default {' '.join(map(str, bench.bpvs))})")
    p.add_argument("--codecs", nargs="+", default=["all"], choices=[*CODEC_NAMES, *GROUPS], metavar="CODEC",
                   help=f"{', '.join(CODEC_NAMES)}, or the groups all / classical / neural "
                        "(default all)")
    p.add_argument("--out", required=True, help="folder for results.json and the plots")
    p.add_argument("--steps", type=int, default=bench.steps,
                   help="training steps of sci/siren/nerf (default %(default)s)")
    p.add_argument("--time-limit", type=float, default=bench.time_limit, help="seconds per neural fit")
    p.add_argument("--device", default=bench.device, help="auto, cpu or cuda[:N] for the neural codecs")
    p.add_argument("--seed", type=int, default=bench.seed, help="random seed (default %(default)s)")
    p.add_argument("--samples", type=int, default=bench.samples,
                   help="sci/siren voxels per block per step (default %(default)s)")
    p.add_argument("--batch", type=int, default=bench.batch,
                   help="nerf voxels per step (default %(default)s)")
    p.add_argument("--crop", help="use only z0:z1,y0:y1,x0:x1 of every volume (Python slices)")
    p.add_argument("--tolerance", type=float, default=bench.tolerance,
                   help="rate search stops this close below the target (default %(default)s)")
    p.add_argument("--max-evals", type=int, default=bench.max_evals,
                   help="encodings per target at most (default %(default)s)")
    p.add_argument("--ffmpeg", default=bench.ffmpeg,
                   help="FFmpeg executable for hevc/h264 (default %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="write results.json only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _codecs(names: list[str]) -> tuple[str, ...]:
    chosen: list[str] = []
    for name in names:
        for codec in GROUPS.get(name, (name,)):
            if codec not in chosen:
                chosen.append(codec)
    return tuple(chosen)


def _crop(text: str, ndim: int) -> tuple[slice, ...]:
    parts = text.split(",")
    try:
        bounds = [[int(b) if b.strip() else None for b in part.split(":")] for part in parts]
    except ValueError as error:
        raise SciError(f"--crop {text!r} is not start:stop integer ranges") from error
    if len(parts) != ndim or any(len(b) != 2 for b in bounds):
        raise SciError(f"--crop needs {ndim} comma-separated start:stop ranges, got {text!r}")
    return tuple(slice(*b) for b in bounds)


def _names(paths: list[str]) -> list[str]:
    """File stems, made unique."""
    names: list[str] = []
    for path in paths:
        stem = Path(path).name.split(".")[0] or "volume"
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}-{k}", k + 1
        names.append(name)
    return names


def load_volumes(paths: list[str], crop: str | None) -> list[Any]:
    """The volumes as :class:`~napari_sci.bench.runner.NamedVolume`, cropped when asked."""
    import numpy as np

    from napari_sci.bench.runner import NamedVolume
    from napari_sci.core.volume_files import read_volume

    volumes = []
    for path, name in zip(paths, _names(paths)):
        array, _ = read_volume(path)
        if crop:
            array = array[_crop(crop, array.ndim)]
        if array.size == 0:
            raise SciError(f"--crop {crop} leaves nothing of {path}")
        volumes.append(NamedVolume(name, np.ascontiguousarray(array), str(path)))
    return volumes


class _Progress:
    """tqdm on stderr, fed by the runner's events; missing codecs and failures printed as lines."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar = quiet, None

    def __call__(self, event: object) -> None:
        from napari_sci.bench.runner import CodecMissing, TaskDone, TaskStarted

        if isinstance(event, CodecMissing):
            print(f"napari-sci bench: codec {event.missing.codec} is missing: {event.missing.reason}",
                  file=sys.stderr)
        elif isinstance(event, TaskStarted) and not self.quiet:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event.total, file=sys.stderr, unit="task", dynamic_ncols=True)
            self.bar.set_description(f"{event.codec} {event.volume} {event.target_bpv:g} BPV")
        elif isinstance(event, TaskDone):
            if self.bar is not None:
                self.bar.update(1)
            if not event.result.ok:
                message = (f"napari-sci bench: {event.result.codec} failed on {event.result.volume} "
                           f"at {event.result.target_bpv:g} BPV: {'; '.join(event.result.notes)}")
                (self.bar.write(message, file=sys.stderr) if self.bar is not None
                 else print(message, file=sys.stderr))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def summary_lines(report: Any) -> list[str]:
    """A plain-text table of the results (what ``bench`` prints)."""
    lines = [f"{'volume':<28} {'codec':<9} {'target':>6} {'BPV':>7} {'bytes':>9} {'PSNR':>6} "
             f"{'PSNRdt':>6} {'SSIM':>6} {'enc s':>7} {'dec s':>6}  knob"]
    for r in report.results:
        if not r.ok:
            lines.append(f"{r.volume:<28} {r.codec:<9} {r.target_bpv:>6g}  failed: {'; '.join(r.notes)}")
            continue
        knob = f"{r.knob}={r.knob_value:.4g}" + ("" if r.reached else " (target not reachable)")
        lines.append(f"{r.volume:<28} {r.codec:<9} {r.target_bpv:>6g} {_fmt(r.bpv, 4):>7} {r.bytes:>9} "
                     f"{_fmt(r.psnr_data, 2):>6} {_fmt(r.psnr_dtype, 2):>6} {_fmt(r.ssim, 4):>6} "
                     f"{_fmt(r.compress_seconds, 2):>7} {_fmt(r.decompress_seconds, 2):>6}  {knob}")
    lines += [f"missing: {m.codec}: {m.reason}" for m in report.missing]
    return lines


def run_bench(args: argparse.Namespace, out: TextIO) -> int:
    """The ``bench`` subcommand; returns the exit status."""
    from napari_sci.bench.runner import run_benchmark

    settings = BenchSettings(
        bpvs=tuple(args.bpv), codecs=_codecs(args.codecs), steps=args.steps, time_limit=args.time_limit,
        device=args.device, seed=args.seed, samples=args.samples, batch=args.batch,
        tolerance=args.tolerance, max_evals=args.max_evals, ffmpeg=args.ffmpeg)
    folder = Path(args.out)
    if folder.exists() and not folder.is_dir():
        raise SciError(f"--out {folder} exists and is not a folder")
    volumes = load_volumes(args.volumes, args.crop)
    progress = _Progress(args.quiet)
    try:
        report = run_benchmark(volumes, settings, on_event=progress)
    finally:
        progress.close()
    folder.mkdir(parents=True, exist_ok=True)
    from napari_sci.bench.markdown import report_markdown

    (folder / "results.json").write_text(report.to_json() + "\n", encoding="utf-8")
    written = [folder / "results.json"]
    images: list[str] = []
    if not args.no_plots:
        from napari_sci.bench.plots import plot_report

        plots = plot_report(report, folder)
        written += plots
        images = [p.name for p in plots]
    (folder / "results.md").write_text(report_markdown(report, images=images), encoding="utf-8")
    written.append(folder / "results.md")
    print("\n".join(summary_lines(report)), file=out)
    print("wrote " + ", ".join(str(p) for p in written), file=out)
    return 0
