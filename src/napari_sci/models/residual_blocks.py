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
    inverse-transformed, those of one shape in one call."""
    box = tuple(box) if box is not None else tuple((0, s) for s in layout.shape)
    out = np.zeros(tuple(b - a for a, b in box), np.float32)
    if not layout.count or not out.size:
        return out
    counts = tuple(-(-s // m) for s, m in zip(layout.shape, layout.block))
    touched = np.meshgrid(*(np.arange(lo // m, -(-hi // m)) for (lo, hi), m in zip(box, layout.block)),
                          indexing="ij")
    ids = np.ravel_multi_index(tuple(t.reshape(-1) for t in touched), counts)
    for index, shape in enumerate(layout.shapes):
        members = ids[layout.which[ids] == index]
        stack = coefficients[layout.starts[members][:, None] + np.arange(math.prod(shape))]
        coded = stack.any(axis=1)
        if not coded.any():
            continue
        members = members[coded]
        values = idctn(stack[coded].reshape(-1, *shape).astype(np.float64) * step,
                       axes=tuple(range(1, len(shape) + 1)), norm="ortho")
        corners = np.stack(np.unravel_index(members, counts), axis=1) * np.array(layout.block)
        for v, corner in zip(values, corners):
            inner = [(max(int(c), lo), min(int(c) + m, hi)) for c, m, (lo, hi) in zip(corner, shape, box)]
            out[tuple(slice(a - lo, b - lo) for (a, b), (lo, _) in zip(inner, box))] = v[
                tuple(slice(a - int(c), b - int(c)) for (a, b), c in zip(inner, corner))]
    return out
