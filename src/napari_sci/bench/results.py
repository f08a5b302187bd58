"""What a benchmark run records, and its JSON form (non-finite numbers written as strings)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from napari_sci.bench.settings import BenchSettings

SCHEMA = "napari-sci-bench/1"


@dataclass(frozen=True)
class BenchResult:
    """One codec on one volume at one target; metric fields are None when the run failed.

    ``bpv`` and ``bytes`` are what the codec really produced (every byte its decoder gets);
    ``compress_seconds`` is one encoding at the chosen setting, ``search_seconds`` the whole rate
    search for this target (encodings shared with other targets are not repeated).
    """

    codec: str
    volume: str
    target_bpv: float
    target_bytes: int
    status: str = "ok"
    bpv: float | None = None
    bytes: int | None = None
    psnr_data: float | None = None
    psnr_dtype: float | None = None
    ssim: float | None = None
    max_abs_error: float | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    compress_seconds: float | None = None
    decompress_seconds: float | None = None
    search_seconds: float | None = None
    evaluations: int | None = None
    knob: str | None = None
    knob_value: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reached(self) -> bool:
        """The output fits the target (codecs that cannot get that small overshoot, with a note)."""
        return self.bytes is not None and self.bytes <= self.target_bytes


@dataclass(frozen=True)
class MissingCodec:
    """A codec that could not run here, and why (reported, never dropped silently)."""

    codec: str
    reason: str


@dataclass(frozen=True)
class VolumeInfo:
    """A benchmarked volume and the PSNR of its mean-value image (a floor any codec should beat)."""

    name: str
    source: str
    shape: tuple[int, ...]
    dtype: str
    value_range: tuple[float, float]
    psnr_mean_image: float


@dataclass(frozen=True)
class BenchReport:
    """Everything a run produced: settings, machine, volumes, results and missing codecs."""

    settings: BenchSettings
    machine: dict[str, Any]
    volumes: tuple[VolumeInfo, ...]
    results: tuple[BenchResult, ...]
    missing: tuple[MissingCodec, ...]
    seconds: float

    def to_json(self) -> str:
        data = {"schema": SCHEMA, **dataclasses.asdict(self)}
        return json.dumps(_finite(data), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> BenchReport:
        data = _numbers(json.loads(text))
        if data.pop("schema", None) != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report")
        settings = BenchSettings(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in data["settings"].items()})
        volumes = tuple(VolumeInfo(**{**v, "shape": tuple(v["shape"]),
                                      "value_range": tuple(v["value_range"])})
                        for v in data["volumes"])
        results = tuple(BenchResult(**{**r, "notes": tuple(r["notes"])}) for r in data["results"])
        missing = tuple(MissingCodec(**m) for m in data["missing"])
        return cls(settings, data["machine"], volumes, results, missing, data["seconds"])


def merge_reports(reports: Sequence[BenchReport]) -> BenchReport:
    """One report from runs made separately (one volume or codec per process, side by side).

    Settings and machine come from the first report, with the codecs and BPVs of all of them; a
    (codec, volume, target) measured twice is an error rather than a silent pick.
    """
    if not reports:
        raise ValueError("nothing to merge")
    first = reports[0]
    codecs = tuple(dict.fromkeys(c for r in reports for c in r.settings.codecs))
    bpvs = tuple(sorted({b for r in reports for b in r.settings.bpvs}))
    volumes = tuple({v.name: v for r in reports for v in r.volumes}.values())
    results = tuple(x for r in reports for x in r.results)
    keys = [(x.codec, x.volume, x.target_bpv) for x in results]
    if len(set(keys)) != len(keys):
        raise ValueError("the reports measure the same codec, volume and target more than once")
    missing = tuple({m.codec: m for r in reports for m in r.missing}.values())
    return BenchReport(dataclasses.replace(first.settings, codecs=codecs, bpvs=bpvs), first.machine,
                       volumes, results, missing, sum(r.seconds for r in reports))


def _finite(value: Any) -> Any:
    """JSON has no inf/NaN: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _numbers(value: Any) -> Any:
    """Inverse of :func:`_finite`."""
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ffmpeg_version(executable: str) -> str | None:
    path = shutil.which(executable)
    if path is None:
        return None
    done = subprocess.run([path, "-version"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout:
        return None
    return done.stdout.splitlines()[0].split(" Copyright")[0]


def machine_info(settings: BenchSettings) -> dict[str, Any]:
    """CPU model, cores, GPU and library versions: what a reader needs to compare timings."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
        "python": sys.version.split()[0], "numpy": _version("numpy"), "torch": _version("torch"),
        "imagecodecs": _version("imagecodecs"), "ffmpeg": _ffmpeg_version(settings.ffmpeg),
    }
    try:
        import imagecodecs

        info["codec_libraries"] = [getattr(imagecodecs, f"{name}_version")() for name in
                                   ("jpeg8", "jpeg2k", "jpegxl", "zfp", "sz3")]
    except (ImportError, AttributeError):
        info["codec_libraries"] = None
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info
