"""Running every codec on every volume at every target, measured by the core's metrics module.

Fidelity comes only from :mod:`napari_sci.core.metrics` (called through the module, so every codec
is measured by the same code the CLI and the plugin use). A codec that cannot run here is reported
as missing; one that fails on a task is recorded as failed with the error; neither is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from napari_sci.base.volume import value_range
from napari_sci.bench.codecs import Codec, Target, make_codec
from napari_sci.bench.results import BenchReport, BenchResult, MissingCodec, VolumeInfo, machine_info
from napari_sci.bench.search import TrialCache
from napari_sci.bench.settings import BenchSettings
from napari_sci.bench.side_header import check_bench_volume
from napari_sci.core import metrics


@dataclass(frozen=True)
class NamedVolume:
    """A volume under test and where it came from."""

    name: str
    array: np.ndarray
    source: str = ""


@dataclass(frozen=True)
class TaskStarted:
    """Progress: a codec starts on a volume at a target."""

    index: int
    total: int
    codec: str
    volume: str
    target_bpv: float


@dataclass(frozen=True)
class TaskDone:
    """Progress: a task finished (ok or failed)."""

    index: int
    total: int
    result: BenchResult


@dataclass(frozen=True)
class CodecMissing:
    """Progress: a codec cannot run here."""

    missing: MissingCodec


BenchEvent = TaskStarted | TaskDone | CodecMissing


def describe_volume(volume: NamedVolume) -> VolumeInfo:
    """Shape, dtype, range, and the PSNR of the mean-value image (what "no information" scores)."""
    data = value_range(volume.array)
    mean = np.full(volume.array.shape, float(np.mean(volume.array, dtype=np.float64)))
    reference = metrics.psnr(volume.array, mean, data.span if data.span > 0 else 1.0)
    return VolumeInfo(volume.name, volume.source, tuple(int(s) for s in volume.array.shape),
                      str(volume.array.dtype), (data.low, data.high), reference)


def measure(codec: Codec, volume: NamedVolume, target: Target, cache: TrialCache | None,
            thresholds: Sequence[float], reference: float) -> BenchResult:
    """Compress, decompress and measure one task; any error is recorded, not raised."""
    base = BenchResult(codec.name, volume.name, target.bpv, target.bytes)
    try:
        packed = codec.compress(volume.array, target, cache)
        started = time.perf_counter()
        decoded = codec.decompress(packed.blob)
        decode_seconds = time.perf_counter() - started
        if decoded.shape != volume.array.shape or decoded.dtype != volume.array.dtype:
            raise ValueError(f"decoded {decoded.shape} {decoded.dtype}, expected "
                             f"{volume.array.shape} {volume.array.dtype}")
    except Exception as error:  # one codec's failure must not end a long run: record it
        return replace(base, status="failed", notes=(f"{type(error).__name__}: {error}",))
    fidelity = metrics.evaluate(volume.array, decoded, thresholds)
    notes = list(packed.notes)
    if fidelity.psnr_data < reference:
        notes.append(f"PSNR below the mean-value image's {reference:.2f} dB")
    return replace(
        base, bpv=metrics.bits_per_voxel(len(packed.blob), volume.array.size), bytes=len(packed.blob),
        psnr_data=fidelity.psnr_data, psnr_dtype=fidelity.psnr_dtype, ssim=fidelity.ssim,
        max_abs_error=fidelity.max_abs_error,
        accuracy={f"{k:g}": v for k, v in fidelity.accuracy.items()},
        compress_seconds=packed.seconds, decompress_seconds=decode_seconds,
        search_seconds=packed.search_seconds, evaluations=packed.evaluations, knob=packed.knob,
        knob_value=packed.knob_value, notes=tuple(notes))


def available_codecs(settings: BenchSettings,
                     on_event: Callable[[BenchEvent], None]) -> tuple[list[Codec], list[MissingCodec]]:
    """The codecs that can run here, and the others with their reasons."""
    ready, missing = [], []
    for name in settings.codecs:
        codec = make_codec(name, settings)
        reason = codec.missing()
        if reason is None:
            ready.append(codec)
        else:
            missing.append(MissingCodec(name, reason))
            on_event(CodecMissing(missing[-1]))
    return ready, missing


def run_benchmark(volumes: Sequence[NamedVolume], settings: BenchSettings,
                  on_event: Callable[[BenchEvent], None] | None = None) -> BenchReport:
    """Every available codec on every volume at every target BPV (ascending)."""
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    for volume in volumes:
        check_bench_volume(volume.array)
    ready, missing = available_codecs(settings, emit)
    infos = [describe_volume(v) for v in volumes]
    bpvs = sorted(settings.bpvs)
    total, results = len(volumes) * len(ready) * len(bpvs), []
    for volume, info in zip(volumes, infos):
        targets = [Target(b, volume.array.size) for b in bpvs]
        for codec in ready:
            cache = TrialCache(keep_bytes=max(t.bytes for t in targets))
            for target in targets:
                emit(TaskStarted(len(results), total, codec.name, volume.name, target.bpv))
                result = measure(codec, volume, target, cache, settings.thresholds,
                                 info.psnr_mean_image)
                results.append(result)
                emit(TaskDone(len(results), total, result))
    return BenchReport(settings, machine_info(settings), tuple(infos), tuple(results), tuple(missing),
                       time.perf_counter() - started)
