"""The encoder's residual layer (format 3, models 7 to 12): what the coded latents leave, as DCT
blocks of the shape that codes it best, at the step that fills the rest of the byte budget.

The tiles are decoded exactly as a reader decodes them (the coded latents and synthesis), so the
residual corrects what the file will show; the step is bisected on the real coded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

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


# isotropic blocks, and blocks thin along axis 0 (a stack's slices, often its coarsest axis): on the
# same latents and bytes the MRI wants 16³, the CT 8³, the light-sheet crop (5×2×2 µm) 4×16×16 at 0.1
# BPV and 2×32×32 at 0.05 (session 29, docs/benchmarks.md §7)
BLOCK_CANDIDATES = ((8, 8, 8), (16, 16, 16), (4, 16, 16), (4, 32, 32), (2, 32, 32))
# each candidate after the first: a bisection within ±2 octaves of the first's step
CANDIDATE_OCTAVES, CANDIDATE_BISECTION_STEPS = 2.0, 9
RD_SHAPES = 2  # the shapes with the least dead-zone error that get the rate–distortion pass too


class ResidualCoding(NamedTuple):
    """The residual model, each tile's stream, and the squared error they leave (normalised units)."""

    model: ResidualModel
    streams: list[bytes]
    error: float


class _Blocks:
    """A tile set's DCT coefficients under one block shape, coded at any step."""

    def __init__(self, targets: Sequence[np.ndarray], decoded: Sequence[np.ndarray],
                 level1: Sequence[np.ndarray | None], block: Sequence[int], rd_lambda: float | None):
        self.layouts = [residual_coding.tile_layout(t.shape, l1, block) for t, l1 in zip(targets, level1)]
        self.coefficients = [residual_blocks.transform(np.asarray(t, np.float64) - d, block)
                             for t, d in zip(targets, decoded)]
        self.rd_lambda = rd_lambda

    def coded(self, step: float, rd: bool) -> tuple[ResidualModel, list[bytes], list[np.ndarray]]:
        """The model, the streams and the integer coefficients they hold."""
        if rd:
            quantised = rd_quantise(list(zip(self.layouts, self.coefficients)), step, self.rd_lambda)
        else:
            quantised = [residual_coding.quantise(c, step) for c in self.coefficients]
        tiles = list(zip(self.layouts, quantised))
        model = residual_coding.best_codes(tiles, step)
        return model, [residual_coding.encode(layout, q, model) for layout, q in tiles], quantised

    def result(self, model: ResidualModel, streams: list[bytes], quantised: list[np.ndarray],
               ) -> ResidualCoding:
        """A coding with the squared error it leaves (orthonormal blocks: the voxels' own), computed
        once for the coding kept, not at every step of a bisection."""
        error = sum(float(((c - model.step * q) ** 2).sum()) for c, q in zip(self.coefficients, quantised))
        return ResidualCoding(model, streams, error)


def code_residual(targets: Sequence[np.ndarray], decoded: Sequence[np.ndarray],
                  level1: Sequence[np.ndarray | None], room: int,
                  stopped: Callable[[], bool] = lambda: False,
                  rd_lambda: float | None = RD_LAMBDA,
                  blocks: Sequence[Sequence[int]] = BLOCK_CANDIDATES) -> ResidualCoding:
    """The residual model and each tile's residual stream, the largest that fits ``room`` bytes (the
    model's own bytes excluded: the caller counts them), and the squared error left.

    ``targets`` are the tiles' normalised original values, ``decoded`` the synthesis output. For each
    block shape of ``blocks`` the step is bisected with dead-zone quantisation (the best shape differs
    by volume and rate: session 29, docs/format.md "Models 11 and 12"). Then, unless ``rd_lambda`` is
    None, the ``RD_SHAPES`` shapes with the least squared error at the budget have their step bisected
    again within the octave below with :func:`rd_quantise` (which spends fewer bytes at a step, so a
    finer one), and the least error is kept: the rate–distortion pass gains more on some shapes than
    on others (session 30: the light-sheet crop at 0.05 BPV, 2×32×32 ahead of 4×32×32 by 0.23 dB
    after it, behind before it). Without it, the least dead-zone error is kept."""
    def empty() -> ResidualCoding:
        error = sum(float(((np.asarray(t, np.float64) - d) ** 2).sum()) for t, d in zip(targets, decoded))
        return ResidualCoding(ResidualModel.empty(), [b""] * len(targets), error)

    if room <= 0:
        return empty()

    def fits(streams: list[bytes]) -> bool:
        return sum(len(s) for s in streams) <= room

    def bisect(shape: _Blocks, low: float, high: float, steps: int, rd: bool,
               ) -> tuple[float, ResidualCoding | None]:
        """log2 of the finest step found that fits (``high`` if none does) and its coding."""
        found = None
        for _ in range(steps):
            if stopped():
                break
            middle = 0.5 * (low + high)
            coding = shape.coded(2.0 ** middle, rd)
            if fits(coding[1]):
                found, high = coding, middle
            else:
                low = middle
        return high, shape.result(*found) if found is not None else None

    # log2 step: the size falls as it grows
    finest = math.log2(residual_coding.STEP_RANGE[0])
    found_by_shape: list[tuple[ResidualCoding, _Blocks, float]] = []
    around = 0.0
    for index, block in enumerate(blocks):
        shape = _Blocks(targets, decoded, level1, block, rd_lambda)
        if index == 0:
            log_step, found = bisect(shape, finest, 0.0, BISECTION_STEPS, False)
            around = log_step
        else:
            log_step, found = bisect(shape, max(finest, around - CANDIDATE_OCTAVES),
                                     min(0.0, around + CANDIDATE_OCTAVES), CANDIDATE_BISECTION_STEPS, False)
        if found is not None:  # only the best few kept: each holds the volume's coefficients
            found_by_shape.append((found, shape, log_step))
            found_by_shape.sort(key=lambda entry: entry[0].error)
            del found_by_shape[max(1, RD_SHAPES):]
        del shape
        if stopped():
            break
    if not found_by_shape:
        return empty()
    if rd_lambda is None:
        return found_by_shape[0][0]
    finals: list[ResidualCoding] = []
    for final, shape, plain in found_by_shape:  # the dead-zone coding stays if the pass cannot fit
        coding = shape.coded(2.0 ** plain, True)
        if fits(coding[1]):
            found = bisect(shape, max(plain - 1.0, finest), plain, RD_BISECTION_STEPS, True)[1]
            final = found if found is not None else shape.result(*coding)
        finals.append(final)
        if stopped():
            break
    return min(finals, key=lambda coding: coding.error)
