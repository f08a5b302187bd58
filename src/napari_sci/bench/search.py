"""Driving a codec's quality knob until its real output size meets a byte target.

Codecs do not promise a size: their knobs (CRF, quality, error bound, PSNR target, rate) move the
size monotonically at best. :func:`search` encodes for real and keeps the largest output that does
not exceed the target, so a classical codec is never given more bytes than SCI is. Steps are
regula falsi on log(size) over the knob's (log-)range, bisecting whenever an interpolated step
would land too close to an end of the bracket. Every encoding is remembered in a :class:`TrialCache`
so the searches for several targets on one volume share their work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Knob:
    """A codec setting that trades size for quality.

    Parameters
    ----------
    name
        What the codec calls it (``crf``, ``quality``, ``abs_error``, ...).
    low, high
        Its range.
    grows
        True when a larger value gives a larger output (quality), False otherwise (CRF, error bound).
    log
        Search the range in log space (error bounds, distances, rates spanning decades).
    integer
        Only whole values are allowed.
    start
        Where to probe first after the smallest-output end, as a fraction of the range in the
        direction of growing output.
    resolution
        Steps smaller than this (in knob units; relative when ``log``) are not worth an encoding.
    """

    name: str
    low: float
    high: float
    grows: bool = True
    log: bool = False
    integer: bool = False
    start: float = 0.5
    resolution: float = 1e-3

    def at(self, u: float) -> float:
        """Knob value at position ``u`` in [0, 1]; 0 gives the smallest output, 1 the largest."""
        t = min(max(u, 0.0), 1.0)
        t = t if self.grows else 1.0 - t
        if self.log:
            value = math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + t * (self.high - self.low)
        return float(round(value)) if self.integer else value

    def position(self, value: float) -> float:
        """Inverse of :meth:`at`: where ``value`` lies in [0, 1]."""
        if self.log:
            t = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            t = (value - self.low) / (self.high - self.low)
        return t if self.grows else 1.0 - t

    def too_close(self, a: float, b: float) -> bool:
        """True when knob values ``a`` and ``b`` leave nothing between them to try."""
        if self.integer:
            return abs(a - b) <= 1
        if self.log:
            return abs(math.log(a) - math.log(b)) <= self.resolution
        return abs(a - b) <= self.resolution


@dataclass(frozen=True)
class Trial:
    """One real encoding: knob value, output bytes (kept only when small enough), seconds."""

    value: float
    size: int
    seconds: float
    blob: bytes | None


@dataclass
class TrialCache:
    """Encodings of one codec on one volume, by knob value; keeps blobs up to ``keep_bytes``."""

    keep_bytes: int
    trials: dict[float, Trial] = field(default_factory=dict)

    def add(self, value: float, blob: bytes, seconds: float) -> Trial:
        kept = blob if len(blob) <= self.keep_bytes else None
        trial = Trial(value, len(blob), seconds, kept)
        self.trials[value] = trial
        return trial


@dataclass(frozen=True)
class SearchOutcome:
    """The chosen encoding and how the search went."""

    trial: Trial
    reached: bool
    evaluations: int
    seconds: float
    note: str | None = None


@dataclass
class _Point:
    u: float
    trial: Trial


def search(encode: Callable[[float], bytes], knob: Knob, target: int, cache: TrialCache | None = None,
           tolerance: float = 0.02, max_evals: int = 16) -> SearchOutcome:
    """Largest output of ``encode(value)`` with at most ``target`` bytes.

    Stops once an output lies within ``tolerance`` below the target, the bracket cannot be
    narrowed, or after ``max_evals`` new encodings. When even the smallest output exceeds the target,
    that smallest output is returned with ``reached=False`` and a note (the codec's floor).
    """
    cache = cache if cache is not None else TrialCache(keep_bytes=target)
    started = time.perf_counter()
    count = [0]

    def probe(u: float) -> _Point:
        value = knob.at(u)
        known = cache.trials.get(value)
        if known is None or (known.blob is None and known.size <= target):
            t0 = time.perf_counter()
            blob = encode(value)
            cache.add(value, blob, time.perf_counter() - t0)
            count[0] += 1
        return _Point(knob.position(value), cache.trials[value])

    floor = probe(0.0)
    if floor.trial.size > target:
        return SearchOutcome(_keep(floor.trial, encode), False, count[0], time.perf_counter() - started,
                             f"cannot reach the target: the smallest output ({knob.name}="
                             f"{floor.trial.value:g}) is {floor.trial.size} bytes > {target}")
    low, high = _cached_bracket(cache, knob, target)
    if high is None:
        high = _bracket(probe, low, target, knob, lambda: count[0] < max_evals)
    while high is not None and count[0] < max_evals and not _close_enough(low, target, tolerance):
        u = _next_u(low, high, target, knob)
        if u is None:
            break
        point = probe(u)
        if point.trial.size <= target:
            low = point
        else:
            high = point
    note = None if high is not None else (
        f"the target is above the largest output tried ({knob.name}={low.trial.value:g})")
    return SearchOutcome(_best_feasible(cache, target), True, count[0], time.perf_counter() - started,
                         note)


def _cached_bracket(cache: TrialCache, knob: Knob, target: int) -> tuple[_Point, _Point | None]:
    """The tightest bracket the earlier encodings give: last fitting point, first one too big."""
    points = sorted((_Point(knob.position(t.value), t) for t in cache.trials.values()),
                    key=lambda p: p.u)
    fitting = [p for p in points if p.trial.size <= target]
    low = fitting[-1]
    above = [p for p in points if p.u > low.u and p.trial.size > target]
    return low, (above[0] if above else None)


def _bracket(probe: Callable[[float], _Point], low: _Point, target: int, knob: Knob,
             budget_left: Callable[[], bool]) -> _Point | None:
    """Step up from ``low`` (moving it) until an output exceeds the target; None if none does."""
    step = max(knob.start - low.u, 0.125)
    while budget_left() and low.u < 1.0:
        point = probe(min(1.0, low.u + step))
        if point.trial.size > target:
            return point
        low.u, low.trial = point.u, point.trial
        step *= 2
    return None


def _close_enough(low: _Point, target: int, tolerance: float) -> bool:
    return low.trial.size >= (1.0 - tolerance) * target


def _next_u(low: _Point, high: _Point, target: int, knob: Knob) -> float | None:
    """Regula falsi on log(size), kept inside the middle 80 % of the bracket, else bisection.

    None when no knob value strictly inside the bracket remains.
    """
    if knob.too_close(low.trial.value, high.trial.value):
        return None
    width = high.u - low.u
    a, b = math.log(max(low.trial.size, 1)), math.log(high.trial.size)
    u = low.u + (math.log(target) - a) / (b - a) * width if b > a else low.u + width / 2
    ends = (low.trial.value, high.trial.value)
    for candidate in (u, low.u + width / 2):
        inside = low.u + 0.1 * width <= candidate <= high.u - 0.1 * width
        if inside and knob.at(candidate) not in ends:
            return candidate
    middle = low.u + width / 2
    return middle if knob.at(middle) not in ends else None


def _best_feasible(cache: TrialCache, target: int) -> Trial:
    feasible = [t for t in cache.trials.values() if t.size <= target and t.blob is not None]
    return max(feasible, key=lambda t: (t.size, -t.seconds))


def _keep(trial: Trial, encode: Callable[[float], bytes]) -> Trial:
    """The trial with its bytes (re-encoded if the cache dropped them for being large)."""
    if trial.blob is not None:
        return trial
    t0 = time.perf_counter()
    blob = encode(trial.value)
    return Trial(trial.value, len(blob), time.perf_counter() - t0, blob)
