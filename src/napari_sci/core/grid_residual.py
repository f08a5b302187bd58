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
from napari_sci.io.residual import ResidualModel
from napari_sci.models import residual_blocks
from napari_sci.models.grid import decode_synthesis, evaluate_tile_box

BISECTION_STEPS = 18  # on log2 of the step between 2^-24 and 1: ~0.9 % apart at the end


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


def code_residual(targets: Sequence[np.ndarray], decoded: Sequence[np.ndarray],
                  level1: Sequence[np.ndarray | None], room: int,
                  stopped: Callable[[], bool] = lambda: False) -> tuple[ResidualModel, list[bytes]]:
    """The residual model and each tile's residual stream, the largest that fits ``room`` bytes (the
    model's own bytes excluded: the caller counts them).

    ``targets`` are the tiles' normalised original values, ``decoded`` the synthesis output."""
    layouts = [residual_coding.tile_layout(t.shape, l1) for t, l1 in zip(targets, level1)]
    coefficients = [residual_blocks.transform(np.asarray(t, np.float64) - d)
                    for t, d in zip(targets, decoded)]

    def coded(step: float) -> tuple[ResidualModel, list[bytes]]:
        tiles = [(layout, residual_coding.quantise(c, step)) for layout, c in zip(layouts, coefficients)]
        model = residual_coding.best_codes(tiles, step)
        return model, [residual_coding.encode(layout, q, model) for layout, q in tiles]

    empty = (ResidualModel.empty(), [b""] * len(targets))
    if room <= 0:
        return empty
    low, high = math.log2(residual_coding.STEP_RANGE[0]), 0.0  # log2 step: size falls as it grows
    best = empty
    for _ in range(BISECTION_STEPS):
        if stopped():
            break
        middle = 0.5 * (low + high)
        model, streams = coded(2.0 ** middle)
        if sum(len(s) for s in streams) <= room:
            best, high = (model, streams), middle
        else:
            low = middle
    return best
