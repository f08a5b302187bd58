"""Turning progress events into what the compress widget shows: a bar position and a status line."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from napari_sci.core.events import FitFinished, FitProgress, FitStarted, PartitionDone, StageStarted
from napari_sci.core.target_quality import QualityTry

PERMILLE = 1000  # the bar's resolution while fitting


@dataclass(frozen=True)
class ProgressView:
    """Bar value and maximum (maximum 0 = busy, no known length) and the status text."""

    value: int
    maximum: int
    text: str


def eta_seconds(event: FitProgress, time_limit: float | None, elapsed: float | None = None) -> float:
    """Seconds of fitting left: the step rate so far, or the time limit if that comes first.

    ``elapsed`` is the caller's wall clock since the fit started; ``event.elapsed`` restarts with each
    fitting phase (format 2's fine-tuning) while ``event.step`` counts on, so it only serves a
    single-phase fit."""
    seconds = event.elapsed if elapsed is None else elapsed
    if event.step <= 0:
        return math.nan
    left = seconds / event.step * max(event.total_steps - event.step, 0)
    if time_limit is not None:
        left = min(left, max(time_limit - seconds, 0.0))
    return left


def fit_fraction(event: FitProgress, time_limit: float | None, elapsed: float | None = None) -> float:
    """How far the fit is, 0 to 1: its steps, or its time when a time limit will end it sooner."""
    seconds = event.elapsed if elapsed is None else elapsed
    done = event.step / max(event.total_steps, 1)
    if time_limit is not None and time_limit > 0:
        done = max(done, seconds / time_limit)
    return min(done, 1.0)


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes else f"{secs} s"


def describe(event: object, time_limit: float | None, elapsed: float | None = None) -> ProgressView | None:
    """What to show for ``event``; None for events that change nothing on screen (``elapsed``: see
    :func:`eta_seconds`)."""
    if isinstance(event, StageStarted):
        return ProgressView(0, 0, f"{event.stage}: {event.detail}")
    if isinstance(event, PartitionDone):
        return ProgressView(0, 0, f"{event.n_blocks} blocks chosen in {event.seconds:.1f} s")
    if isinstance(event, FitStarted):
        return ProgressView(0, PERMILLE,
                            f"fitting {event.n_networks} networks ({event.n_params} parameters) "
                            f"on {event.device}")
    if isinstance(event, FitProgress):
        psnr = "inf" if math.isinf(event.psnr) else f"{event.psnr:.2f}"
        return ProgressView(round(PERMILLE * fit_fraction(event, time_limit, elapsed)), PERMILLE,
                            f"step {event.step}/{event.total_steps} · PSNR ≈ {psnr} dB · "
                            f"ETA {format_seconds(eta_seconds(event, time_limit, elapsed))}")
    if isinstance(event, FitFinished):
        return ProgressView(0, 0, f"fitted {event.steps} steps ({event.reason}); decoding to measure")
    if isinstance(event, QualityTry):
        verdict = "reaches the target" if event.passed else "short of the target"
        return ProgressView(0, 0, f"try {event.attempt}: {event.bpv:.4g} BPV → PSNR {event.psnr:.2f} dB "
                                  f"({verdict}); searching")
    return None


@dataclass
class ProgressClock:
    """:func:`describe` with the wall clock since the current fit started (reset by ``FitStarted``)."""

    time_limit: float | None
    started: float = field(default_factory=time.monotonic)

    def view(self, event: object) -> ProgressView | None:
        if isinstance(event, FitStarted):
            self.started = time.monotonic()
        return describe(event, self.time_limit, time.monotonic() - self.started)
