"""The encoder's residual layer (format 3, models 7 to 10): what the coded latents leave, as 8³ DCT
blocks, at the step that fills the rest of the byte budget.

The tiles are decoded exactly as a reader decodes them (the coded latents and synthesis), so the
residual corrects what the file will show; the step is bisected on the real coded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from napari_sci.base.grid_geometry import GridLayout
from napari_sci.io import latent_context
from napari_sci.io import residual as residual_coding
from napari_sci.io.latent_context import ContextModel
from napari_sci.io.residual import ResidualModel, TileLayout
from napari_sci.models import residual_blocks
from napari_sci.models.grid import decode_synthesis, evaluate_tile_box

BISECTION_STEPS = 18  # on log2 of the step between 2^-24 and 1: ~0.9 % apart at the end
RD_BISECTION_STEPS = 8  # then, deciding each coefficient by rate and distortion, on one octave below
RD_LAMBDA = 0.15  # λ of those decisions in step² per bit (offline on the table's files: 0.05–0.45 tried)


def decoded_tiles(payloads: Sequence[bytes], shapes: Sequence[Sequence[int]], layout: GridLayout,
                  synthesis: bytes, latent_step: float, context: ContextModel,
                  ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Each tile's synthesis output (normalised values) and its level-1 latents, from its coded
    model 3 payload: what a reader computes before the residual."""
    weights = decode_synthesis(synthesis, layout)
    values, level1 = [], []
    for payload, shape in zip(payloads, shapes):
        grids = latent_context.decode_tile(payload, shape, layout.levels, context)
        box = tuple((0, s) for s in shape)
        values.append(evaluate_tile_box(grids, weights, layout, shape, box, latent_step))
        level1.append(grids[1] if len(grids) > 1 else None)
    return values, level1


def rd_quantise(tiles: Sequence[tuple[TileLayout, np.ndarray]], step: float, lam: float = RD_LAMBDA,
                ) -> list[np.ndarray]:
    """The tiles' integer coefficients (each tile: its layout and DCT coefficients) chosen by rate and
    distortion: any integers decode, so this is the encoder's freedom. From plain rounding, each
    non-zero coefficient keeps its magnitude, steps one down or becomes zero, whichever costs least
    in squared error + ``lam``·step²·bits under the codes the rounded coefficients would get; then a
    band of a block whose coefficients do not pay for their bits and significance flag is zeroed
    (isolated ±1s in high bands, mostly). Offline, the same bytes of the table's files: +0.03 to
    +0.24 dB against a dead zone of 0.33 (docs/benchmarks.md §7, session 28). Coding 2 only."""
    rounded = [residual_coding.quantise(c, step, 0.5) for _, c in tiles]
    model = residual_coding.best_codes([(layout, q) for (layout, _), q in zip(tiles, rounded)], step)
    return [_rd_tile(layout, c, q, model, lam) if q.any() else q
            for (layout, c), q in zip(tiles, rounded)]


def _rd_tile(layout: TileLayout, coefficients: np.ndarray, q: np.ndarray, model: ResidualModel,
             lam: float) -> np.ndarray:
    scaled = np.abs(coefficients) / model.step  # distortion in step² units
    m = np.abs(q).astype(np.int64)
    nonzero = np.flatnonzero(m)
    candidates = np.stack((m[nonzero], m[nonzero] - 1, np.zeros_like(nonzero)), axis=1)
    bits = residual_coding.coefficient_bits(layout, q, model, nonzero, candidates)
    cost = (scaled[nonzero, None] - candidates) ** 2 + lam * bits
    m[nonzero] = candidates[np.arange(nonzero.size), np.argmin(cost, axis=1)]
    q = (np.sign(coefficients) * m).astype(np.int32)
    # a band pays its flag and every one of its coefficients' bits (zeros too) for its squared error
    gain = residual_coding.band_sums(layout, scaled ** 2 - (scaled - m) ** 2)
    own = residual_coding.coefficient_bits(layout, q, model, np.arange(q.size), m[:, None])[:, 0]
    significant = residual_coding.significance(layout, q)
    flags = residual_coding.band_flag_bits(layout, significant, model)
    price = flags[..., 1] - flags[..., 0] + residual_coding.band_sums(layout, own)
    drop = significant & (gain < lam * price)
    q[drop[layout.block_of, layout.bands]] = 0
    return q


def code_residual(targets: Sequence[np.ndarray], decoded: Sequence[np.ndarray],
                  level1: Sequence[np.ndarray | None], room: int,
                  stopped: Callable[[], bool] = lambda: False,
                  rd_lambda: float | None = RD_LAMBDA) -> tuple[ResidualModel, list[bytes]]:
    """The residual model and each tile's residual stream, the largest that fits ``room`` bytes (the
    model's own bytes excluded: the caller counts them).

    ``targets`` are the tiles' normalised original values, ``decoded`` the synthesis output. The step
    is bisected with dead-zone quantisation, then, unless ``rd_lambda`` is None, again within the
    octave below it with :func:`rd_quantise` (which spends fewer bytes at a step, so a finer one)."""
    layouts = [residual_coding.tile_layout(t.shape, l1) for t, l1 in zip(targets, level1)]
    coefficients = [residual_blocks.transform(np.asarray(t, np.float64) - d)
                    for t, d in zip(targets, decoded)]

    def coded(step: float, rd: bool) -> tuple[ResidualModel, list[bytes]]:
        if rd:
            quantised = rd_quantise(list(zip(layouts, coefficients)), step, rd_lambda)
        else:
            quantised = [residual_coding.quantise(c, step) for c in coefficients]
        tiles = list(zip(layouts, quantised))
        model = residual_coding.best_codes(tiles, step)
        return model, [residual_coding.encode(layout, q, model) for layout, q in tiles]

    empty = (ResidualModel.empty(), [b""] * len(targets))
    if room <= 0:
        return empty
    best = empty

    def bisect(low: float, high: float, steps: int, rd: bool) -> float:
        """log2 of the finest step found that fits (``high`` if none does)."""
        nonlocal best
        for _ in range(steps):
            if stopped():
                break
            middle = 0.5 * (low + high)
            model, streams = coded(2.0 ** middle, rd)
            if sum(len(s) for s in streams) <= room:
                best, high = (model, streams), middle
            else:
                low = middle
        return high

    # log2 step: the size falls as it grows
    plain = bisect(math.log2(residual_coding.STEP_RANGE[0]), 0.0, BISECTION_STEPS, False)
    if rd_lambda is not None and best is not empty:
        model, streams = coded(2.0 ** plain, True)
        if sum(len(s) for s in streams) <= room:
            best = (model, streams)
            bisect(max(plain - 1.0, math.log2(residual_coding.STEP_RANGE[0])), plain,
                   RD_BISECTION_STEPS, True)
    return best
