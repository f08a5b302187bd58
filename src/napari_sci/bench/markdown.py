"""Markdown tables of a benchmark report (docs/benchmarks.md quotes them; nothing typed by hand).

Cells come straight from the measured results. † marks an output larger than its target (the codec
cannot get that small), ‡ a PSNR below the mean-value image's; "@ x" gives the achieved BPV wherever
it is not within 10 % below the target (too big, or the codec's best quality is smaller still).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from napari_sci.bench.results import BenchReport, BenchResult


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    return "∞" if math.isinf(value) else f"{value:.{digits}f}"


def _find(report: BenchReport, codec: str, volume: str, bpv: float) -> BenchResult | None:
    return next((r for r in report.results
                 if r.codec == codec and r.volume == volume and r.target_bpv == bpv), None)


def _mark(result: BenchResult, reference: float) -> str:
    marks = "" if result.reached else "†"
    if result.psnr_data is not None and result.psnr_data < reference:
        marks += "‡"
    return marks


def _codecs(report: BenchReport) -> list[str]:
    return [c for c in report.settings.codecs if any(r.codec == c for r in report.results)]


def psnr_table(report: BenchReport, bpv: float) -> str:
    """Codec × volume → PSNR over the data range at one target BPV (achieved BPV where missed)."""
    names = [v.name for v in report.volumes]
    lines = [f"| codec | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for codec in _codecs(report):
        cells = []
        for volume in report.volumes:
            r = _find(report, codec, volume.name, bpv)
            if r is None or not r.ok:
                cells.append("failed" if r is not None else "–")
                continue
            cell = f"{_num(r.psnr_data, 2)}{_mark(r, volume.psnr_mean_image)}"
            near = r.reached and r.bytes is not None and r.bytes >= 0.9 * r.target_bytes
            cells.append(cell if near else f"{cell} @ {r.bpv:.3f}")
        lines.append(f"| {codec} | {' | '.join(cells)} |")
    reference = " | ".join(_num(v.psnr_mean_image, 2) for v in report.volumes)
    lines.append(f"| *mean-value image* | {reference} |")
    return "\n".join(lines) + "\n"


def volume_table(report: BenchReport, volume: str) -> str:
    """Every measured figure of one volume (one row per codec and target)."""
    info = next(v for v in report.volumes if v.name == volume)
    lines = ["| codec | target BPV | BPV | bytes | PSNR data | PSNR dtype | SSIM | Acc(200) | Acc(500) "
             "| enc s | dec s | search s | setting |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for codec in _codecs(report):
        for bpv in sorted(report.settings.bpvs):
            r = _find(report, codec, volume, bpv)
            if r is None:
                continue
            if not r.ok:
                lines.append(f"| {codec} | {bpv:g} | failed: {'; '.join(r.notes)} |" + " |" * 10)
                continue
            acc = [r.accuracy.get(k) for k in ("200", "500")]
            setting = f"{r.knob} = {r.knob_value:.4g}" if r.knob_value is not None else str(r.knob)
            lines.append(
                f"| {codec} | {bpv:g} | {r.bpv:.4f}{_mark(r, info.psnr_mean_image)} | {r.bytes} "
                f"| {_num(r.psnr_data, 2)} | {_num(r.psnr_dtype, 2)} | {_num(r.ssim, 4)} "
                f"| {_num(acc[0], 4)} | {_num(acc[1], 4)} | {_num(r.compress_seconds, 2)} "
                f"| {_num(r.decompress_seconds, 2)} | {_num(r.search_seconds, 1)} | {setting} |")
    return "\n".join(lines) + "\n"


def seconds_table(report: BenchReport) -> str:
    """Per codec and volume: seconds of the whole rate search over all targets (one encoding each
    for the neural codecs), and the mean seconds of one decode."""
    names = [v.name for v in report.volumes]
    lines = [f"| codec | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for codec in _codecs(report):
        cells = []
        for name in names:
            rows = [r for r in report.results if r.codec == codec and r.volume == name and r.ok]
            if not rows:
                cells.append("–")
                continue
            encode = sum((r.search_seconds or r.compress_seconds or 0.0) for r in rows)
            decode = sum(r.decompress_seconds or 0.0 for r in rows) / len(rows)
            cells.append(f"{encode:.1f} / {decode:.2f}")
        lines.append(f"| {codec} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def report_markdown(report: BenchReport, command: str | None = None,
                    images: Sequence[str] = ()) -> str:
    """The whole report: machine, PSNR per target, timings, then every figure per volume."""
    m = report.machine
    parts = [f"Machine: {m.get('cpu')}, {m.get('cores')} cores, GPU {m.get('gpu') or 'none'}; "
             f"Python {m.get('python')}, torch {m.get('torch')}, imagecodecs {m.get('imagecodecs')}, "
             f"{(m.get('ffmpeg') or 'no FFmpeg').split(' Copyright')[0]}. "
             f"Run took {report.seconds:.0f} s.\n"]
    if command:
        parts.append(f"Command:\n\n```bash\n{command}\n```\n")
    parts += [f"![rate-distortion]({path})\n" for path in images]
    for bpv in sorted(report.settings.bpvs):
        parts.append(f"PSNR over the data range (dB) at **{bpv:g} BPV**:\n\n{psnr_table(report, bpv)}")
    parts.append("Seconds per codec (rate search over all targets / one decode):\n\n"
                 + seconds_table(report))
    for volume in report.volumes:
        parts.append(f"All figures for `{volume.name}` ({'×'.join(map(str, volume.shape))} "
                     f"{volume.dtype}):\n\n{volume_table(report, volume.name)}")
    missing = [f"- `{x.codec}`: {x.reason}" for x in report.missing]
    if missing:
        parts.append("Missing codecs:\n\n" + "\n".join(missing) + "\n")
    return "\n".join(parts)
