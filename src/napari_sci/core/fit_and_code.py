"""Fitting the block networks and turning their weights into file payloads.

Format 1 stores the trained float32 weights as they are. Format 2 trains in float for most of the
steps, chooses per-tensor quantisation steps that fill the byte budget (``core/quantise.py``),
fine-tunes with those steps in the loop (straight-through rounding), and entropy codes the result
(``io/weights.py``). Both are generators of the same progress events, so callers see one fit.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from napari_sci.base.config import CompressConfig, FitConfig
from napari_sci.base.networks import BlockNetwork
from napari_sci.core.events import FitCancelled, FitEvent, FitFinished, FitStarted, StageStarted
from napari_sci.core.fit import as_stop_flag, fit_blocks
from napari_sci.core.partition import Block
from napari_sci.core.quantise import (
    block_error_weight,
    fit_codes_to_budget,
    network_tensor_sizes,
    step_scales,
    tensor_sensitivities,
)
from napari_sci.errors import SciCancelledError
from napari_sci.io.weights import TensorCode, encode_payload, quantise, split_tensors, width_code_for

PRE_QAT_MARGIN = 0.99  # rate-control target before fine-tuning, leaving room for the weights to move

Weights = list[np.ndarray | None]


@dataclass(frozen=True)
class FitJob:
    """What fitting needs besides the settings: the data, the blocks and their networks."""

    volume: np.ndarray
    blocks: Sequence[Block]
    networks: Sequence[BlockNetwork]
    lows: np.ndarray
    highs: np.ndarray
    span: float


def _run(job: FitJob, config: FitConfig, spec_config: CompressConfig, stop: object, *,
         first_step: int, total: int, announce: bool, initial: Weights | None = None,
         quant_steps: list[list[float] | None] | None = None,
         ) -> Generator[FitEvent, None, tuple[Weights, FitFinished]]:
    """One fitting phase; passes progress on, raises ``SciCancelledError`` after a cancel."""
    finished: FitFinished | None = None
    for event in fit_blocks(job.volume, job.blocks, job.networks, job.lows, job.highs, job.span,
                            spec_config.network, config, stop, initial=initial,
                            quant_steps=quant_steps, first_step=first_step, total_steps=total):
        if isinstance(event, FitCancelled):
            yield event
            raise SciCancelledError(f"compression cancelled at step {event.step}; nothing written")
        if isinstance(event, FitFinished):
            finished = event
        elif not isinstance(event, FitStarted) or announce:
            yield event
    assert finished is not None
    return list(finished.weights), finished


def _check_stop(stop: object, stage: str) -> None:
    """Cancel between the stages that do not step (quantising, coding): a GUI's Cancel is honoured
    there too, not only during fitting."""
    if as_stop_flag(stop)():
        raise SciCancelledError(f"compression cancelled while {stage}; nothing written")


def _phases(fit: FitConfig, qat_fraction: float) -> tuple[FitConfig, FitConfig]:
    qat_steps = round(fit.steps * qat_fraction)
    limit = fit.time_limit
    float_phase = replace(fit, steps=fit.steps - qat_steps,
                          time_limit=None if limit is None else limit * (1 - qat_fraction))
    qat_phase = replace(fit, steps=qat_steps, lr=fit.lr * fit.decay, decay=1.0,
                        time_limit=None if limit is None else max(limit * qat_fraction, 1e-3))
    return float_phase, qat_phase


def _scales(job: FitJob, weights: Weights, config: CompressConfig) -> list[np.ndarray]:
    generator = torch.Generator().manual_seed(config.fit.seed)
    ndim, n_total = job.volume.ndim, job.volume.size
    scales = []
    for i, w in enumerate(weights):
        if w is None:
            continue
        net, block = job.networks[i], job.blocks[i]
        sizes = network_tensor_sizes(ndim, net, config.network.layers)
        sensitivity = tensor_sensitivities(w, net, ndim, config.network, generator)
        weight = block_error_weight(block.voxels, n_total, float(job.lows[i]), float(job.highs[i]))
        scales.append(step_scales(sizes, sensitivity, weight))
    return scales


def _recode(weights: Sequence[np.ndarray], sizes: Sequence[Sequence[int]],
            codes: Sequence[Sequence[TensorCode]]) -> list[bytes]:
    """Payloads with the fine-tuning steps kept and only the entropy model widths refitted."""
    payloads = []
    for w, s, c in zip(weights, sizes, codes):
        fresh = [TensorCode(code.step_code, width_code_for(quantise(t, code)))
                 for t, code in zip(split_tensors(w, s), c)]
        payloads.append(encode_payload(w, s, fresh))
    return payloads


def _code_v2(job: FitJob, config: CompressConfig, payload_budget: int, stop: object,
             ) -> Generator[FitEvent, None, tuple[list[bytes], FitFinished]]:
    float_phase, qat_phase = _phases(config.fit, config.coding.qat_fraction)
    total = config.fit.steps
    weights, first = yield from _run(job, float_phase, config, stop, first_step=0, total=total,
                                     announce=True)
    finished = first
    yield StageStarted("quantise", "choosing quantisation steps for the byte budget")
    _check_stop(stop, "quantising")
    trained = [w for w in weights if w is not None]
    sizes = [network_tensor_sizes(job.volume.ndim, job.networks[i], config.network.layers)
             for i, w in enumerate(weights) if w is not None]
    scales = _scales(job, weights, config)
    codes, payloads = fit_codes_to_budget(trained, sizes, scales, math.floor(payload_budget * PRE_QAT_MARGIN),
                                          checkpoint=lambda: _check_stop(stop, "quantising"))
    _check_stop(stop, "coding")
    if qat_phase.steps > 0:
        steps = iter([[c.step for c in block_codes] for block_codes in codes])
        quant_steps = [None if w is None else next(steps) for w in weights]
        weights, second = yield from _run(job, qat_phase, config, stop, first_step=first.steps,
                                          total=total, announce=False, initial=weights,
                                          quant_steps=quant_steps)
        finished = replace(first, steps=first.steps + second.steps, elapsed=first.elapsed + second.elapsed,
                           psnr=second.psnr)
        trained = [w for w in weights if w is not None]
        _check_stop(stop, "coding")
        payloads = _recode(trained, sizes, codes)
        if sum(len(p) for p in payloads) > payload_budget:
            codes, payloads = fit_codes_to_budget(trained, sizes, scales, payload_budget,
                                                  checkpoint=lambda: _check_stop(stop, "coding"))
    coded = iter(payloads)
    return [b"" if w is None else next(coded) for w in weights], finished


def fit_and_code(job: FitJob, config: CompressConfig, payload_budget: int, stop: object = None,
                 ) -> Generator[FitEvent, None, tuple[list[bytes], FitFinished]]:
    """Fit every network, yield progress; return one payload per block (empty for constants) and
    the summary of the fit (steps run, seconds, why it ended)."""
    if config.coding.format_version == 1:
        weights, finished = yield from _run(job, config.fit, config, stop, first_step=0,
                                            total=config.fit.steps, announce=True)
        payloads = [b"" if w is None else w.astype("<f4").tobytes() for w in weights]
    else:
        payloads, finished = yield from _code_v2(job, config, payload_budget, stop)
    summary = replace(finished, weights=())
    yield summary
    return payloads, summary
