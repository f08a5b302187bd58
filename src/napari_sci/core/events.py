"""Typed progress events of a compression run, and the run-state enum a GUI shows.

Long work is a generator of these events; the CLI turns them into a progress bar, the napari widget into
a live plot, tests into assertions. None of them carries GUI objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class RunState(Enum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True)
class StageStarted:
    """A pipeline stage began: ``partition``, ``allocate``, ``fit``, ``quantise``, ``evaluate``."""

    stage: str
    detail: str = ""


@dataclass(frozen=True)
class PartitionDone:
    n_blocks: int
    objective: float
    seconds: float


@dataclass(frozen=True)
class FitStarted:
    total_steps: int
    n_blocks: int
    n_networks: int
    n_params: int
    n_groups: int
    device: str
    time_limit: float | None


@dataclass(frozen=True)
class FitProgress:
    """One report during fitting.

    ``psnr`` is estimated from the training samples of this step over the data's value range (all
    blocks, constant ones included); the exact figure comes after decoding.
    """

    step: int
    total_steps: int
    loss: float
    psnr: float
    elapsed: float
    lr: float


@dataclass(frozen=True)
class FitFinished:
    """Fitting ended normally; ``weights[i]`` is block i's flat float32 vector (None if constant)."""

    steps: int
    elapsed: float
    psnr: float
    reason: str
    weights: tuple[np.ndarray | None, ...]


@dataclass(frozen=True)
class FitCancelled:
    step: int
    elapsed: float


FitEvent = StageStarted | PartitionDone | FitStarted | FitProgress | FitFinished | FitCancelled
