"""Latent-grid model family, the numpy side: geometry, payload coding and box decoding (format 3).

A tile's value at a voxel is ``synthesis(features)`` where the features are the tile's latent levels,
each linearly interpolated at the voxel; level ``l`` has ``ceil(s / 2**l)`` samples along an axis of ``s``
voxels and voxel ``i`` sits at ``(i + 0.5) / 2**l - 0.5`` in its coordinates (docs/format.md, "Version
3"). Latents are integers coded with one zero-mean quantised Laplace per tile and level; the synthesis
is a ReLU MLP shared by all tiles, coded like format 2's networks. Decoding needs numpy and
constriction only, and touches just the latents a box needs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_sci.errors import SciFormatError
from napari_sci.io.weights import decode_payload, tensor_sizes

LATENT_LIMIT = 4095  # latents are clamped to ±this (the coder's symbol range)
SCALE_CODE_ZERO = 0  # a level whose latents are all zero: nothing coded for it
Box = tuple[tuple[int, int], ...]


def level_shape(shape: Sequence[int], level: int) -> tuple[int, ...]:
    """Samples of level ``level`` along each axis of a tile of ``shape`` voxels."""
    return tuple(-(-int(s) // (1 << level)) for s in shape)


def levels_for(shape: Sequence[int], most: int) -> int:
    """Levels of a tile: until the coarsest grid is one sample along every axis, at most ``most``."""
    largest = max(int(s) for s in shape)
    return max(1, min(most, math.ceil(math.log2(largest)) + 1 if largest > 1 else 1))


def scale_of(code: int) -> float:
    """Laplace scale (in latent units) of a scale code 1..255."""
    return 2.0 ** (code / 16 - 6)


def scale_code_for(scale: float) -> int:
    """The nearest scale code (1..255) to a Laplace scale."""
    if not scale > 0:
        return 1
    return int(np.clip(round(16 * (math.log2(scale) + 6)), 1, 255))


@dataclass(frozen=True)
class GridLayout:
    """What every tile of a file shares: the pyramid depth and the synthesis MLP's shape."""

    levels: int
    hidden: int
    layers: int

    def dims(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer: levels → hidden → … → hidden → 1."""
        widths = [self.levels] + [self.hidden] * (self.layers - 1) + [1]
        return list(itertools.pairwise(widths))

    def tensor_sizes(self) -> list[int]:
        return tensor_sizes(self.dims())

    def macs(self) -> int:
        """Multiply-adds per decoded voxel in the synthesis (interpolation not counted)."""
        return sum(a * b for a, b in self.dims())


def interpolation(size: int, level: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, upper weight) that interpolate ``level`` at voxels ``start..stop-1``."""
    n = -(-size // (1 << level))
    position = (np.arange(start, stop, dtype=np.float64) + 0.5) / (1 << level) - 0.5
    position = np.clip(position, 0.0, n - 1.0)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    return lower, upper, (position - lower).astype(np.float32)


def interpolate_box(grid: np.ndarray, level: int, tile_shape: Sequence[int], box: Box) -> np.ndarray:
    """Level ``level`` of a tile, linearly interpolated on the voxels of ``box`` (tile coordinates)."""
    out = grid.astype(np.float32)
    for axis, (size, (start, stop)) in enumerate(zip(tile_shape, box)):
        lower, upper, weight = interpolation(int(size), level, start, stop)
        a = np.take(out, lower, axis=axis)
        b = np.take(out, upper, axis=axis)
        shape = [1] * out.ndim
        shape[axis] = -1
        out = a + (b - a) * weight.reshape(shape)
    return out


def synthesise(features: np.ndarray, weights: Sequence[np.ndarray], layout: GridLayout) -> np.ndarray:
    """The shared MLP on (voxels, levels) features: ReLU between layers, linear output."""
    x = features.astype(np.float32, copy=False)
    tensors = iter(weights)
    dims = layout.dims()
    for k, (fan_in, fan_out) in enumerate(dims):
        w = next(tensors).reshape(fan_out, fan_in)
        b = next(tensors)
        x = x @ w.T + b
        if k < len(dims) - 1:
            np.maximum(x, 0, out=x)
    return x[:, 0]


def decode_synthesis(payload: bytes, layout: GridLayout) -> list[np.ndarray]:
    """The synthesis tensors (W₁, b₁, …) from their format-2-style payload."""
    sizes = layout.tensor_sizes()
    flat = decode_payload(payload, sizes)
    bounds = np.cumsum([0, *sizes])
    return [flat[bounds[i]: bounds[i + 1]] for i in range(len(sizes))]


def _laplace(code: int):  # type: ignore[no-untyped-def]
    """The coder's model of a level: one fixed quantised Laplace (no per-symbol parameter arrays)."""
    import constriction

    return constriction.stream.model.QuantizedLaplace(-LATENT_LIMIT, LATENT_LIMIT, 0.0, scale_of(code))


def encode_tile(latents: Sequence[np.ndarray], scale_codes: Sequence[int]) -> bytes:
    """A tile payload: one u8 scale code per level (0: all zero), then the ANS stream of the rest."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    codes = []
    for grid, code in reversed(list(zip(latents, scale_codes))):  # a stack: last level first
        symbols = np.clip(np.asarray(grid).reshape(-1), -LATENT_LIMIT, LATENT_LIMIT).astype(np.int32)
        if not symbols.any():
            codes.append(SCALE_CODE_ZERO)
            continue
        code = max(1, int(code))
        coder.encode_reverse(symbols, _laplace(code))
        codes.append(code)
    header = bytes(reversed(codes))
    return header + coder.get_compressed().astype("<u4").tobytes()


def decode_tile(payload: bytes, tile_shape: Sequence[int], levels: int) -> list[np.ndarray]:
    """A tile's integer latents, level 0 first; malformed payloads raise ``SciFormatError``."""
    import constriction

    n_levels = levels_for(tile_shape, levels)
    if len(payload) < n_levels or (len(payload) - n_levels) % 4:
        raise SciFormatError(f"latent-grid tile payload of {len(payload)} bytes is malformed")
    codes = list(payload[:n_levels])
    words = np.frombuffer(payload, dtype="<u4", offset=n_levels).astype(np.uint32)
    grids = []
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        for level, code in enumerate(codes):
            shape = level_shape(tile_shape, level)
            count = int(np.prod(shape))
            if code == SCALE_CODE_ZERO:
                grids.append(np.zeros(shape, dtype=np.int32))
                continue
            grids.append(coder.decode(_laplace(code), count).astype(np.int32).reshape(shape))
    except (ValueError, RuntimeError, OverflowError) as error:
        raise SciFormatError(f"latent-grid tile payload cannot be decoded: {error}") from error
    return grids


def evaluate_tile_box(grids: Sequence[np.ndarray], weights: Sequence[np.ndarray], layout: GridLayout,
                      tile_shape: Sequence[int], box: Box) -> np.ndarray:
    """Normalised values (0 = value_min, 1 = value_max) of a tile on ``box`` (tile coordinates)."""
    box_shape = tuple(stop - start for start, stop in box)
    count = int(np.prod(box_shape))
    features = np.zeros((count, layout.levels), dtype=np.float32)
    for level, grid in enumerate(grids):
        if grid.any():
            features[:, level] = interpolate_box(grid, level, tile_shape, box).reshape(-1)
    return synthesise(features, weights, layout).reshape(box_shape)
