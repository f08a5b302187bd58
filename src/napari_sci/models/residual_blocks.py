"""The residual layer's transform (format 3, models 7 to 12): a tile's blocks (8³, or models 11 and
12's shape) to orthonormal DCT-II coefficients in coding order, and back on any box of the tile
(docs/format.md "Models 7 and 8", "Models 11 and 12")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.fft import dctn, idctn

from napari_sci.io.residual import TileLayout, block_slices


def transform(residual: np.ndarray, block: Sequence[int] | None = None) -> np.ndarray:
    """The orthonormal DCT-II of every block (``block`` voxels an axis, default 8) of a tile's residual
    (float64), in coding order."""
    return np.concatenate([dctn(np.asarray(residual[b], np.float64), norm="ortho").reshape(-1)
                           for b in block_slices(residual.shape, block)])


def reconstruct(layout: TileLayout, coefficients: np.ndarray, step: float,
                box: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """A tile's residual (float32, normalised values) from its integer coefficients (coding order),
    on the tile-local ``box`` (default: the whole tile): only the blocks the box touches are
    inverse-transformed, the full ones in one call."""
    box = tuple(box) if box is not None else tuple((0, s) for s in layout.shape)
    out = np.zeros(tuple(b - a for a, b in box), np.float32)
    full, partial = [], []
    for i, b in enumerate(layout.blocks):
        if any(sl.stop <= lo or sl.start >= hi for sl, (lo, hi) in zip(b, box)):
            continue
        q = coefficients[layout.starts[i]:layout.starts[i + 1]]
        if not q.any():
            continue
        (full if q.size == math.prod(layout.block) else partial).append(i)

    def place(values: np.ndarray, b: tuple[slice, ...]) -> None:
        inner = tuple(slice(max(sl.start, lo), min(sl.stop, hi)) for sl, (lo, hi) in zip(b, box))
        out[tuple(slice(s.start - lo, s.stop - lo) for s, (lo, _) in zip(inner, box))] = values[
            tuple(slice(s.start - sl.start, s.stop - sl.start) for s, sl in zip(inner, b))]

    if full:
        stack = np.stack([coefficients[layout.starts[i]:layout.starts[i + 1]] for i in full])
        values = idctn(stack.reshape(len(full), *layout.block).astype(np.float64) * step,
                       axes=tuple(range(1, len(layout.shape) + 1)), norm="ortho")
        for v, i in zip(values, full):
            place(v, layout.blocks[i])
    for i in partial:
        b = layout.blocks[i]
        q = coefficients[layout.starts[i]:layout.starts[i + 1]]
        place(idctn(q.reshape([sl.stop - sl.start for sl in b]).astype(np.float64) * step, norm="ortho"), b)
    return out
