"""Settings of one benchmark run, shared by every codec (validated once, passed explicitly)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from napari_sci.base.config import ACCURACY_THRESHOLDS, FitConfig
from napari_sci.errors import SciConfigError

CODEC_NAMES: tuple[str, ...] = (
    "grid", "sci", "sci-v1", "siren", "nerf", "hevc", "h264", "jpeg", "jpeg2000", "jpegxl", "zfp", "sz3",
    "sperr")
CLASSICAL: tuple[str, ...] = ("hevc", "h264", "jpeg", "jpeg2000", "jpegxl", "zfp", "sz3", "sperr")
NEURAL: tuple[str, ...] = ("grid", "sci", "sci-v1", "siren", "nerf")
DEFAULT_BPVS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25)


@dataclass(frozen=True)
class BenchSettings:
    """What a run compares and how hard the codecs may try.

    Parameters
    ----------
    bpvs
        Target bits per voxel; every byte a decoder needs counts.
    codecs
        Codec names, in the order they run (see ``CODEC_NAMES``).
    steps, time_limit, device, seed
        Training of the neural codecs (``sci``, ``siren``, ``nerf``): the same for all three.
    samples
        ``sci`` / ``siren``: voxels per block per step (the core's ``samples_per_block``).
    batch
        ``nerf``: voxels per step.
    tolerance, max_evals
        Rate search of the classical codecs: stop within ``tolerance`` below the target, or after
        ``max_evals`` new encodings per target.
    thresholds
        Raw intensities τ of the binarised accuracy Acc(τ).
    ffmpeg, threads
        The FFmpeg executable, and the threads codecs may use (0: their default).
    """

    bpvs: tuple[float, ...] = DEFAULT_BPVS
    codecs: tuple[str, ...] = CLASSICAL
    steps: int = FitConfig.steps
    time_limit: float | None = FitConfig.time_limit
    device: str = FitConfig.device
    seed: int = FitConfig.seed
    samples: int = FitConfig.samples_per_block
    batch: int = 65536
    tolerance: float = 0.02
    max_evals: int = 16
    thresholds: tuple[float, ...] = ACCURACY_THRESHOLDS
    ffmpeg: str = "ffmpeg"
    threads: int = 0

    def __post_init__(self) -> None:
        if not self.bpvs or not all(math.isfinite(b) and b > 0 for b in self.bpvs):
            raise SciConfigError(f"--bpv needs positive numbers, got {self.bpvs}")
        unknown = [c for c in self.codecs if c not in CODEC_NAMES]
        if unknown or not self.codecs:
            raise SciConfigError(f"unknown codecs {unknown}; choose from {', '.join(CODEC_NAMES)}")
        if self.steps < 0 or self.samples < 1 or self.batch < 1 or self.threads < 0:
            raise SciConfigError("steps and threads must be >= 0, samples and batch >= 1")
        if self.time_limit is not None and self.time_limit <= 0:
            raise SciConfigError(f"--time-limit must be > 0 s, got {self.time_limit}")
        if not 0 < self.tolerance < 1 or self.max_evals < 2:
            raise SciConfigError("tolerance must be in (0, 1) and max_evals >= 2")
