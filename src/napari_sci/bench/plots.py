"""Rate-distortion figures (PNG): PSNR over the data's range and SSIM against achieved BPV.

The only module of the harness that imports matplotlib (lazily, object-oriented API with the Agg
canvas: no pyplot state, no display). Filled markers: the codec met the byte target; hollow: it could
not get that small and the point sits at the smallest size it reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_sci.bench.results import BenchReport, BenchResult
from napari_sci.bench.settings import NEURAL

MARKERS = "osD^v<>pPX*h"
LOSSLESS_DB = 100.0


def _figure(title: str, ticks: Sequence[float]) -> tuple[Any, Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    figure = Figure(figsize=(11, 4.4), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    psnr_axes, ssim_axes = figure.subplots(1, 2)
    figure.suptitle(title, fontsize=11)
    for axes, label in ((psnr_axes, "PSNR, data range (dB)"), (ssim_axes, "SSIM (mean over z-slices)")):
        axes.set_xscale("log")
        axes.set_xlabel("bits per voxel (achieved; every byte counted)")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.3)
        axes.set_xticks(list(ticks), [f"{t:g}" for t in ticks])
        axes.xaxis.set_minor_formatter(NullFormatter())
    return figure, psnr_axes, ssim_axes


def _curve(axes: Any, xs: Sequence[float], ys: Sequence[float], reached: Sequence[bool], codec: str,
           index: int, label: bool) -> None:
    style = "-" if codec in NEURAL else "--"
    marker = MARKERS[index % len(MARKERS)]
    color = f"C{index % 10}"
    filled = [i for i, ok in enumerate(reached) if ok]
    axes.plot(xs, ys, style, color=color, marker=marker, markevery=filled,
              label=codec if label else None)
    hollow = [i for i, ok in enumerate(reached) if not ok]
    if hollow:
        axes.plot([xs[i] for i in hollow], [ys[i] for i in hollow], linestyle="none", marker=marker,
                  color=color, markerfacecolor="none")


def _points(results: Sequence[BenchResult]) -> list[tuple[float, float, float, bool]]:
    """(bpv, psnr, ssim, reached) sorted by bpv, duplicates (one output for two targets) once."""
    seen = {}
    for r in results:
        if r.ok and r.bpv is not None and r.psnr_data is not None and r.ssim is not None:
            seen[(r.bytes, r.psnr_data)] = (r.bpv, r.psnr_data, r.ssim, r.reached)
    return sorted(seen.values())


def _draw(figure: Any, axes: tuple[Any, Any], curves: dict[str, list[tuple[float, float, float, bool]]],
          reference: float | None, path: Path) -> Path:
    psnr_axes, ssim_axes = axes
    for index, (codec, points) in enumerate(curves.items()):
        if not points:
            continue
        xs, ps, ss, ok = zip(*points)
        _curve(psnr_axes, xs, ps, ok, codec, index, label=True)
        _curve(ssim_axes, xs, ss, ok, codec, index, label=False)
    if reference is not None:
        psnr_axes.axhline(reference, color="grey", linestyle=":", label="mean-value image")
    figure.legend(loc="outside right center", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def plot_volume(report: BenchReport, volume: str, path: Path) -> Path:
    """One volume's PSNR and SSIM against BPV, one line per codec."""
    info = next(v for v in report.volumes if v.name == volume)
    shape = "×".join(map(str, info.shape))
    figure, *axes = _figure(f"{volume} ({shape} {info.dtype})", sorted(report.settings.bpvs))
    curves = {codec: _points([r for r in report.results if r.volume == volume and r.codec == codec])
              for codec in report.settings.codecs}
    return _draw(figure, tuple(axes), curves, info.psnr_mean_image, path)


def average_points(report: BenchReport, codec: str) -> list[tuple[float, float, float, bool]]:
    """Per target BPV, the mean over volumes, only where every volume has a result for the codec.

    A lossless result (PSNR = ∞) counts as ``LOSSLESS_DB`` so that the mean stays finite; the
    figure's title says so.
    """
    names = [v.name for v in report.volumes]
    points = []
    for bpv in sorted(report.settings.bpvs):
        rows = [r for r in report.results if r.codec == codec and r.target_bpv == bpv and r.ok]
        if sorted(r.volume for r in rows) != sorted(names) or not rows:
            continue
        psnr = [min(r.psnr_data, LOSSLESS_DB) for r in rows]
        points.append((float(np.mean([r.bpv for r in rows])), float(np.mean(psnr)),
                       float(np.mean([r.ssim for r in rows])), all(r.reached for r in rows)))
    return sorted(set(points))


def plot_average(report: BenchReport, path: Path) -> Path:
    """Mean PSNR and SSIM over all volumes against mean achieved BPV, one line per codec."""
    figure, *axes = _figure(f"mean over {len(report.volumes)} volumes (a point only where every "
                            f"volume has a result; lossless counted as {LOSSLESS_DB:g} dB)",
                            sorted(report.settings.bpvs))
    curves = {codec: average_points(report, codec) for codec in report.settings.codecs}
    return _draw(figure, tuple(axes), curves, None, path)


def plot_report(report: BenchReport, folder: Path) -> list[Path]:
    """Every volume's figure and the average figure, as ``folder/<volume>.png``, ``average.png``."""
    paths = [plot_volume(report, v.name, folder / f"{v.name}.png") for v in report.volumes]
    return [*paths, plot_average(report, folder / "average.png")]
