"""Latent-grid geometry: how many levels a tile has, each level's shape, the synthesis' layer sizes.

Plain integers, shared by the byte format (which checks payload and section sizes by them) and the
model that trains and decodes the grids (docs/format.md, "Version 3").
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

# A tile's latents are one ANS stream, decoded whole (about 20 M latents/s here): beyond 2^24 voxels a
# hostile file of a few KB could make a reader decode for tens of seconds (a fuzz find), so larger
# tiles are refused as corrupt and the encoder never writes one.
MAX_TILE_VOXELS = 1 << 24
# the residual layer's blocks (format 3, models 11 and 12): each axis a power of two, 2 to 32 voxels,
# 8³ to 16³ voxels in all (no more blocks a tile than 8³ gives: 2³ blocks of a 2^24-voxel tile took
# 12 s and 0.7 GB to lay out, a hostile file's cheap claim)
RESIDUAL_BLOCK_SIDES = (2, 32)
RESIDUAL_BLOCK_VOXELS = (512, 4096)


def residual_block_ok(block: Sequence[int]) -> bool:
    """Whether models 11 and 12 can state this residual block shape (three axes)."""
    low, high = RESIDUAL_BLOCK_SIDES
    fewest, most = RESIDUAL_BLOCK_VOXELS
    return (len(block) == 3 and all(isinstance(m, numbers.Integral) and low <= m <= high and m & (m - 1) == 0
                                    for m in block) and fewest <= math.prod(block) <= most)


def level_shape(shape: Sequence[int], level: int) -> tuple[int, ...]:
    """Samples of level ``level`` along each axis of a tile of ``shape`` voxels: ⌈s / 2^level⌉."""
    return tuple(-(-int(s) // (1 << level)) for s in shape)


def levels_for(shape: Sequence[int], most: int) -> int:
    """Levels of a tile: until the coarsest grid is one sample along every axis, at most ``most``."""
    largest = max(int(s) for s in shape)
    return max(1, min(most, math.ceil(math.log2(largest)) + 1 if largest > 1 else 1))


def latent_count(shape: Sequence[int], most: int) -> int:
    """Latents of all levels of a tile."""
    return sum(math.prod(level_shape(shape, level)) for level in range(levels_for(shape, most)))


@dataclass(frozen=True)
class GridLayout:
    """What every tile of a file shares: the pyramid depth, how levels are upsampled (``linear``,
    models 2–4, or ``bspline``, models 5–6) and the synthesis MLP's shape."""

    levels: int
    hidden: int
    layers: int
    upsampling: str = "linear"

    def dims(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer: levels → hidden → … → hidden → 1."""
        widths = [self.levels] + [self.hidden] * (self.layers - 1) + [1]
        return list(itertools.pairwise(widths))

    def tensor_sizes(self) -> list[int]:
        """Element counts of W₁, b₁, W₂, b₂, … in file order."""
        return [n for fan_in, fan_out in self.dims() for n in (fan_in * fan_out, fan_out)]

    def params(self) -> int:
        return sum(self.tensor_sizes())

    def macs(self) -> int:
        """Multiply-adds per decoded voxel in the synthesis (interpolation not counted)."""
        return sum(a * b for a, b in self.dims())
