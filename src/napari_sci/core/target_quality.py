"""Compressing to a quality instead of a size: the smallest file whose decoded PSNR reaches a target.

PSNR grows with the budget, roughly linearly in log(BPV). The search brackets the target with tries
at doubling/halving budgets (the first step sized by a typical slope), then narrows the bracket with
secant steps in log(BPV), kept at least a quarter inside it so noise cannot stall it. It stops when the
bracket is within ``size_tolerance`` or after ``max_tries``, and returns the smallest passing file.
Every try is reported. Warm start: the block tree and its spectrum concentrations (an FFT of every
node, the costly part of partitioning) are computed once and reused by every try.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from napari_sci.base.config import Budget, CompressConfig
from napari_sci.base.volume import check_volume, normalised_volume, value_range
from napari_sci.core.codec import EncodeDone, EncodeResult, encode_events
from napari_sci.core.partition import analyse_tree
from napari_sci.errors import SciBudgetError

TYPICAL_SLOPE = 4.0  # dB per doubling of the budget, to size the first step
FIRST_GUESS_BPV = 0.1  # the first try when a PSNR target comes with no size (API, CLI, widget)


@dataclass(frozen=True)
class QualityTry:
    """One encoding of the search: its budget, what it achieved and whether it passed."""

    attempt: int
    bpv: float
    n_bytes: int
    psnr: float
    seconds: float
    passed: bool


@dataclass(frozen=True)
class QualitySearch:
    target_psnr: float
    min_bpv: float = 0.005
    max_bpv: float = 4.0
    size_tolerance: float = 0.08
    max_tries: int = 8


def _next_bpv(tries: Sequence[QualityTry], search: QualitySearch) -> float | None:
    passing = [t for t in tries if t.passed]
    failing = [t for t in tries if not t.passed]
    hi = min(passing, key=lambda t: t.bpv) if passing else None
    lo = max(failing, key=lambda t: t.bpv) if failing else None
    if hi is not None and lo is not None:
        if hi.bpv / lo.bpv <= 1 + search.size_tolerance:
            return None
        a, b = math.log2(lo.bpv), math.log2(hi.bpv)
        slope = (hi.psnr - lo.psnr) / (b - a) if hi.psnr > lo.psnr else TYPICAL_SLOPE
        guess = a + (search.target_psnr - lo.psnr) / slope
        return 2.0 ** min(max(guess, a + (b - a) / 4), b - (b - a) / 4)
    last = tries[-1]
    step = max(1.0, abs(search.target_psnr - last.psnr) / TYPICAL_SLOPE)
    bpv = last.bpv * 2.0 ** (step if lo is not None else -step)
    if bpv > search.max_bpv and last.bpv >= search.max_bpv:
        return None
    if bpv < search.min_bpv and last.bpv <= search.min_bpv:
        return None
    return min(max(bpv, search.min_bpv), search.max_bpv)


def compress_to_psnr_events(volume: np.ndarray, config: CompressConfig, search: QualitySearch,
                            spacing: Sequence[float] | None = None, stop: object = None,
                            ) -> Iterator[object]:
    """Yield each try's progress events and a :class:`QualityTry`; end with ``EncodeDone(best)``.

    ``config.budget`` is the first guess (its BPV, or its ratio converted to BPV).
    """
    array = check_volume(volume)
    bits = 8 * array.dtype.itemsize
    bpv = config.budget.bpv if config.budget.bpv is not None else bits / float(config.budget.ratio)
    data = value_range(array)
    if data.span == 0:
        search = replace(search, max_tries=1)
    analysis = analyse_tree(normalised_volume(array, data), config.partition)
    tries: list[QualityTry] = []
    best: EncodeResult | None = None
    next_bpv: float | None = min(max(bpv, search.min_bpv), search.max_bpv)
    limit = config.fit.time_limit  # for the whole search, shared by its tries
    deadline = None if limit is None else time.perf_counter() + limit
    while next_bpv is not None and len(tries) < search.max_tries:
        started = time.perf_counter()
        if deadline is not None and tries and deadline - started <= 0:
            break
        attempt = replace(config, budget=Budget(bpv=next_bpv))
        if deadline is not None:
            attempt = replace(attempt, fit=replace(config.fit, time_limit=max(deadline - started, 0.1)))
        result = None
        try:
            for event in encode_events(array, attempt, spacing, stop, analysis=analysis):
                if isinstance(event, EncodeDone):
                    result = event.result
                else:
                    yield event
        except SciBudgetError:
            if next_bpv >= search.max_bpv:
                raise
            tries.append(QualityTry(len(tries) + 1, next_bpv, 0, -math.inf,
                                    time.perf_counter() - started, False))
        else:
            assert result is not None
            passed = result.metrics.psnr_data >= search.target_psnr
            tries.append(QualityTry(len(tries) + 1, result.bpv, result.n_bytes,
                                    result.metrics.psnr_data, time.perf_counter() - started, passed))
            if passed and (best is None or result.n_bytes < best.n_bytes):
                best = result
        yield tries[-1]
        next_bpv = _next_bpv(tries, search)
    if best is None:
        top = max(tries, key=lambda t: t.psnr)
        raise SciBudgetError(
            f"PSNR {search.target_psnr:g} dB was not reached: the best try gave {top.psnr:.2f} dB at "
            f"{top.bpv:.4g} BPV; raise max BPV, steps or time limit, or lower the target")
    yield EncodeDone(best)


def compress_to_psnr(volume: np.ndarray, config: CompressConfig, search: QualitySearch,
                     spacing: Sequence[float] | None = None,
                     on_event: Callable[[object], None] | None = None,
                     stop: object = None) -> EncodeResult:
    """The smallest encoding found whose PSNR (data range) reaches ``search.target_psnr``."""
    for event in compress_to_psnr_events(volume, config, search, spacing, stop):
        if isinstance(event, EncodeDone):
            return event.result
        if on_event is not None:
            on_event(event)
    raise AssertionError("the quality search ended without a result")
