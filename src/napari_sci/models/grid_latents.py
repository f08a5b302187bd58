"""All tiles' latent pyramids as one flat parameter, so a training step is a few whole-volume kernels.

A step used to loop over tiles and levels (a hundred small gathers, each with its own index
arithmetic); here every tile and level lives in one vector, a table gives each (tile, level) its
offset, shape and strides, and the interpolation at a batch of voxels of any tiles is one gather of
(voxels, levels, corners) entries. Voxel samples are drawn sorted, so the gather and its scatter-add
backward walk memory in order. The interpolation is the one of ``models.grid.interpolation``.

With B-spline upsampling (models 5 and 6) level 1 is gathered at 4^ndim samples a voxel, and every
level from 2 on is first evaluated on level 1's samples (small matrix products per tile and level:
level 1 is an eighth of the voxels), stacked channels first, so that one gather of 2^ndim corners
reads all those levels for a voxel at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from napari_sci.base.grid_geometry import GridLayout, level_shape, levels_for
from napari_sci.io.latent_context import (
    MEAN_TERMS,
    MEAN_UNIT,
    ContextModel,
    coarser_level,
    lad_fit,
    level_contexts,
    level_mean_features,
)
from napari_sci.io.latents import LATENT_LIMIT
from napari_sci.models.grid import axis_matrix, bspline_matrix
from napari_sci.models.grid_net import laplace_bits

LATENT_MODES = ("noise", "ste", "hard")
SCALE_RANGE = (2.0 ** -6, 2.0 ** 9)  # the Laplace scales a tile level's estimate may take
MEAN_FIT_SAMPLES = 1 << 17  # latents a level's mean weights are fitted on, at most (model 4)


@dataclass(frozen=True)
class VoxelSample:
    """Voxels drawn across the tiles: each one's tile, its index inside the tile and in the targets."""

    tile: torch.Tensor    # (n,) long
    voxel: torch.Tensor   # (n, ndim) long, inside the tile
    flat: torch.Tensor    # (n,) long, into the concatenated tile targets


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def quantise(values: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Latents as the synthesis sees them: uniform ``noise`` (training), ``ste`` or ``hard`` rounding."""
    if mode == "noise":
        return values + (torch.rand(values.shape, generator=generator, device=values.device) - 0.5)
    if mode == "ste":
        return _round_ste(values)
    if mode == "hard":
        return torch.round(values)
    raise ValueError(f"latent mode must be one of {LATENT_MODES}, got {mode!r}")


class PackedLatents(nn.Module):
    """The latents of every tile, level after level and tile after tile, initialised at zero (Cool-chic).

    Parameters
    ----------
    shapes
        Each tile's shape in voxels (all of one dimensionality).
    layout
        The file's grid layout: ``layout.levels`` is the most levels a tile has; smaller tiles have
        fewer (``levels_for``) and their missing coarse features are zero.
    finest_level
        The finest level that is trained; finer ones are not allocated and stay zero (a file codes
        such a level in one byte). At low rates the full-resolution level ends all but empty, yet it
        holds 7/8 of the latents and most of a step's work.
    """

    def __init__(self, shapes: Sequence[Sequence[int]], layout: GridLayout, finest_level: int = 0,
                 context: bool = False, mean: bool = False) -> None:
        super().__init__()
        self.shapes = [tuple(int(s) for s in shape) for shape in shapes]
        self.layout = layout
        self.ndim = len(self.shapes[0]) if self.shapes else 3
        levels = layout.levels
        n_tiles = len(self.shapes)
        dims = np.ones((n_tiles, levels, self.ndim), np.int64)
        offsets = np.zeros((n_tiles, levels), np.int64)
        present = np.zeros((n_tiles, levels), np.float32)
        self.segments: list[tuple[int, int, tuple[int, ...]]] = []  # (offset, size, shape) in flat order
        self.tile_segments: list[list[int]] = []  # each tile's segments, finest trained level first
        self.tile_levels: list[int] = []   # levels of each tile
        self.tile_first: list[int] = []    # its finest trained level (every tile trains its coarsest)
        for shape in self.shapes:
            n_levels = levels_for(shape, levels)
            self.tile_levels.append(n_levels)
            self.tile_first.append(min(finest_level, n_levels - 1))
            self.tile_segments.append([])
        # every tile's full-resolution level first, tile after tile: laid out like the targets, so a
        # sampled voxel's own level-0 latent is at its index (``fine``); the coarser levels after them
        offset = 0
        for coarse in (False, True):
            for t, shape in enumerate(self.shapes):
                for level in range(self.tile_first[t], self.tile_levels[t]):
                    if (level > 0) != coarse:
                        continue
                    level_dims = level_shape(shape, level)
                    size = int(np.prod(level_dims))
                    dims[t, level], offsets[t, level], present[t, level] = level_dims, offset, 1.0
                    self.tile_segments[t].append(len(self.segments))
                    self.segments.append((offset, size, level_dims))
                    offset += size
        self.first = min(self.tile_first, default=0)  # levels below it are zero in every tile
        # with every tile's level 0 trained, flat[:fine_size] is that level, aligned with the voxels
        self.fine_size = sum(int(np.prod(s)) for s in self.shapes) if self.first == 0 and self.shapes else 0
        self.fine_segments = len(self.shapes) if self.fine_size else 0
        coarse_offsets = np.where(present > 0, offsets - self.fine_size, 0)
        coarse_offsets[:, 0] = 0
        strides = np.ones_like(dims)
        for a in range(self.ndim - 2, -1, -1):
            strides[..., a] = strides[..., a + 1] * dims[..., a + 1]
        self.flat = nn.Parameter(torch.zeros(offset))
        self._matrices: dict[tuple[int, int], torch.Tensor] = {}
        self.register_buffer("dims", torch.from_numpy(dims), persistent=False)
        self.register_buffer("strides", torch.from_numpy(strides), persistent=False)
        self.register_buffer("offsets", torch.from_numpy(offsets), persistent=False)
        self.register_buffer("present", torch.from_numpy(present), persistent=False)
        self.register_buffer("coarse_offsets", torch.from_numpy(coarse_offsets), persistent=False)
        self.register_buffer("inverse_scale", 0.5 ** torch.arange(levels, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("seg_start", torch.tensor([s[0] for s in self.segments], dtype=torch.long),
                             persistent=False)
        self.register_buffer("seg_size", torch.tensor([s[1] for s in self.segments], dtype=torch.long),
                             persistent=False)
        self.context = context
        if context:  # model 3's rate: each latent's scale code moved by its contexts (see rate_terms)
            seg_level = [level for t in range(n_tiles)
                         for level in range(self.tile_first[t], self.tile_levels[t])]
            order = np.argsort(np.concatenate([self.tile_segments[t] for t in range(n_tiles)]), kind="stable")
            self.register_buffer("seg_level", torch.tensor(np.asarray(seg_level, np.int64)[order]),
                                 persistent=False)
            self.register_buffer("contexts", torch.zeros((3, offset)), persistent=False)
            # per level: the base's correction and the slopes per first-group flag, neighbourhood
            # bin and coarser-level bin, in scale-code units (1/16 octave); zero: the factorised model
            self.entropy = nn.Parameter(torch.zeros((levels, 4)))
        self.mean = context and mean
        if self.mean:  # model 4: each latent's Laplace centred on weights · (coarser value, neighbour means)
            self.register_buffer("mean_features", torch.zeros((MEAN_TERMS, offset)), persistent=False)
            self.register_buffer("centre", torch.zeros(offset), persistent=False)
            self.register_buffer("mean_weights", torch.zeros((levels, MEAN_TERMS)), persistent=False)
            level_of = np.repeat(np.asarray(seg_level, np.int64)[order],
                                 [self.segments[i][1] for i in range(len(self.segments))])
            self._level_of = torch.from_numpy(level_of)
            # each level's latents for the weights' fit, thinned to at most MEAN_FIT_SAMPLES evenly
            self._fit_rows = []
            for level in range(levels):
                rows = np.flatnonzero(level_of == level)
                self._fit_rows.append(rows[::max(1, -(-rows.size // MEAN_FIT_SAMPLES))])
        tile_sizes = torch.tensor([int(np.prod(s)) for s in self.shapes], dtype=torch.long)
        self.register_buffer("tile_start", torch.cat([torch.zeros(1, dtype=torch.long),
                                                      tile_sizes.cumsum(0)]), persistent=False)
        self.register_buffer("tile_dims", torch.tensor(self.shapes, dtype=torch.long).reshape(
            n_tiles, self.ndim), persistent=False)
        self.upsampling = layout.upsampling
        if self.upsampling == "bspline":  # each tile's levels ≥ 2 on level 1's samples (see module doc)
            half = np.asarray([level_shape(shape, 1) for shape in self.shapes], np.int64).reshape(
                n_tiles, self.ndim)
            half_strides = np.ones_like(half)
            for a in range(self.ndim - 2, -1, -1):
                half_strides[:, a] = half_strides[:, a + 1] * half[:, a + 1]
            half_start = np.concatenate([[0], np.cumsum(np.prod(half, axis=1))])
            self.register_buffer("half_dims", torch.from_numpy(half), persistent=False)
            self.register_buffer("half_strides", torch.from_numpy(half_strides), persistent=False)
            self.register_buffer("half_start", torch.from_numpy(half_start[:-1].copy()), persistent=False)
            self.register_buffer("_tap_offsets", torch.arange(-1, 3), persistent=False)
            # the B-spline matrices as buffers, made here: built inside a compiled step they broke
            # the graph (each tile's products then compiled on their own, past the recompile limit)
            for t, shape in enumerate(self.shapes):
                for level in range(max(2, self.tile_first[t]), self.tile_levels[t]):
                    for rows in level_shape(shape, 1):
                        name = f"_half_{rows}_{level}"
                        if not hasattr(self, name):
                            self.register_buffer(name, torch.from_numpy(
                                bspline_matrix(rows, level - 1).astype(np.float32)), persistent=False)

    @property
    def n_voxels(self) -> int:
        return int(self.tile_start[-1])

    def numel(self) -> int:
        return self.flat.numel()

    # -- quantisation ---------------------------------------------------------------------------
    def quantised(self, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """The flat latents as the synthesis sees them: uniform ``noise`` (training), ``ste`` or
        ``hard`` rounding."""
        return quantise(self.flat, mode, generator)

    def clamp_(self) -> None:
        with torch.no_grad():
            self.flat.clamp_(-LATENT_LIMIT, LATENT_LIMIT)

    def _trained(self, tile: int) -> int:
        return self.tile_levels[tile] - self.tile_first[tile]

    def tile_grids(self, flat: torch.Tensor, tile: int) -> list[torch.Tensor]:
        """Views of one tile's trained levels (``tile_first[tile]`` on) in ``flat`` (a tensor laid out
        like the parameter)."""
        own = [self.segments[i] for i in self.tile_segments[tile]]
        return [flat[o:o + n].view(shape) for o, n, shape in own]

    def tile_arrays(self) -> list[list[np.ndarray]]:
        """Each tile's (unrounded) levels, every one of them, as float32 arrays, copies: the levels
        finer than the trained ones are zeros."""
        flat = self.flat.detach().cpu()
        return [[np.zeros(level_shape(shape, level), np.float32) for level in range(self.tile_first[t])]
                + [g.numpy().copy() for g in self.tile_grids(flat, t)]
                for t, shape in enumerate(self.shapes)]

    def pack(self, tiles: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
        """A flat tensor laid out like the parameter from per-tile arrays of every level (the
        untrained finer levels are left out)."""
        by_segment: dict[int, torch.Tensor] = {}
        for t, tile in enumerate(tiles):
            for index, g in zip(self.tile_segments[t], tile[self.tile_first[t]:]):
                by_segment[index] = torch.from_numpy(np.asarray(g, np.float32).reshape(-1))
        parts = [by_segment[i] for i in sorted(by_segment)]
        flat = torch.cat(parts) if parts else torch.zeros(0)
        if flat.numel() != self.numel():
            raise ValueError(f"{flat.numel()} latents given, the tiles hold {self.numel()}")
        return flat.to(self.flat.device)

    # -- sampling and features ------------------------------------------------------------------
    def sample(self, count: int, generator: torch.Generator | None = None) -> VoxelSample:
        """``count`` voxels drawn uniformly over all tiles' voxels, in memory order."""
        device = self.flat.device
        flat = torch.randint(0, self.n_voxels, (count,), generator=generator, device=device).sort().values
        tile = torch.searchsorted(self.tile_start, flat, right=True) - 1
        local = flat - self.tile_start[tile]
        dims = self.tile_dims[tile]
        coords = []
        for a in range(self.ndim - 1, -1, -1):
            coords.append(local % dims[:, a])
            local = local // dims[:, a]
        return VoxelSample(tile, torch.stack(coords[::-1], dim=-1), flat)

    def whole_tile(self, tile: int) -> VoxelSample:
        """Every voxel of one tile, in raster order."""
        device = self.flat.device
        shape = self.shapes[tile]
        local = torch.arange(int(np.prod(shape)), device=device)
        voxel = torch.stack(torch.unravel_index(local, shape), dim=-1)
        return VoxelSample(torch.full_like(local, tile), voxel, local + self.tile_start[tile])

    def features(self, flat: torch.Tensor, sample: VoxelSample) -> torch.Tensor:
        """(n, layout.levels) features of the sampled voxels from the latents ``flat``."""
        return self.features_at(flat, sample.tile, sample.voxel)

    def features_at(self, flat: torch.Tensor, tile: torch.Tensor, voxel: torch.Tensor,
                    fine: torch.Tensor | None = None) -> torch.Tensor:
        """(n, layout.levels) features of voxels ``voxel`` (n, ndim) of tiles ``tile`` (n,).

        Voxel ``i`` of a tile sits at ``(i + 0.5) / 2**l − 0.5`` on level ``l``, clamped to the grid:
        the map of ``models.grid.interpolation`` (``align_corners=False``). Plain tensors in and out,
        so that the step around it can be compiled. With ``fine`` (the voxels' own level-0 latents,
        (n,)), ``flat`` holds only the coarser levels (``flat[fine_size:]`` of the layout).
        """
        if self.upsampling == "bspline":
            return self._bspline_features(flat, tile, voxel)
        first = 1 if fine is not None else self.first  # finer levels: zero in every tile, not gathered
        position = voxel.to(torch.float32) + 0.5
        p = position[:, None, :] * self.inverse_scale[None, first:, None] - 0.5  # (n, levels, ndim)
        dims = self.dims[tile][:, first:]
        p = torch.minimum(p.clamp_min(0), (dims - 1).to(torch.float32))
        lower_f = p.floor()
        weight = p - lower_f
        lower = lower_f.long()
        upper = torch.minimum(lower + 1, dims - 1)
        strides = self.strides[tile][:, first:]
        lower, upper = lower * strides, upper * strides
        offsets = self.coarse_offsets if fine is not None else self.offsets
        index = offsets[tile][:, first:, None]                               # (n, levels, 1)
        weights = self.present[tile][:, first:, None]
        for a in range(self.ndim):
            pair_index = torch.stack((lower[..., a], upper[..., a]), dim=-1)
            pair_weight = torch.stack((1 - weight[..., a], weight[..., a]), dim=-1)
            index = (index[..., :, None] + pair_index[..., None, :]).flatten(-2)
            weights = (weights[..., :, None] * pair_weight[..., None, :]).flatten(-2)
        features = (flat[index] * weights).sum(-1)
        if fine is not None:
            return torch.cat((fine[:, None], features), dim=1)
        if first:
            features = torch.cat((features.new_zeros(features.shape[0], first), features), dim=1)
        return features

    def _bspline_features(self, flat: torch.Tensor, tile: torch.Tensor, voxel: torch.Tensor) -> torch.Tensor:
        """Features with B-spline upsampling: level 0 read at the voxel, level 1 by the B-spline at
        the voxel (4^ndim samples), levels ≥ 2 from the level-1-resolution stack
        (:meth:`half_stack`) interpolated linearly (2^ndim corners, every level at once)."""
        n = voxel.shape[0]
        p = (voxel.to(torch.float32) + 0.5) * 0.5 - 0.5                        # on level 1's samples
        dims = self.half_dims[tile]
        p = torch.minimum(p.clamp_min(0), (dims - 1).to(torch.float32))
        lower_f = p.floor()
        weight = p - lower_f
        lower = lower_f.long()
        # level 1: the cubic B-spline's four samples per axis
        strides = self.strides[tile][:, 1]
        index = self.offsets[tile][:, 1:2]
        weights = self.present[tile][:, 1:2]
        taps = _bspline_taps(weight)                                             # (n, ndim, 4)
        for a in range(self.ndim):
            at = torch.minimum((lower[:, a:a + 1] + self._tap_offsets).clamp_min(0), dims[:, a:a + 1] - 1)
            index = (index[:, :, None] + (at * strides[:, a:a + 1])[:, None, :]).flatten(1)
            weights = (weights[:, :, None] * taps[:, None, a, :]).flatten(1)
        # a tile without level 1 has offset 0 and weight 0: its indices are zeroed to stay in range
        level_one = (flat[index * (weights != 0)] * weights).sum(1)
        # levels ≥ 2: linear from the stack on level 1's samples
        stack = self.half_stack(flat)                                            # (levels − 2, Σ half)
        upper = torch.minimum(lower + 1, dims - 1)
        strides = self.half_strides[tile]
        index = self.half_start[tile][:, None]
        weights = torch.ones((n, 1), device=flat.device)
        for a in range(self.ndim):
            pair_index = torch.stack((lower[:, a] * strides[:, a], upper[:, a] * strides[:, a]), dim=-1)
            pair_weight = torch.stack((1 - weight[:, a], weight[:, a]), dim=-1)
            index = (index[:, :, None] + pair_index[:, None, :]).flatten(1)
            weights = (weights[:, :, None] * pair_weight[:, None, :]).flatten(1)
        coarse = (stack[:, index] * weights).sum(-1).T                           # (n, levels − 2)
        if self.first == 0:
            local = (voxel * self.strides[tile][:, 0]).sum(-1)
            present = self.present[tile][:, 0]
            fine = flat[(self.offsets[tile][:, 0] + local) * (present > 0)] * present
        else:
            fine = flat.new_zeros(n)
        return torch.cat((fine[:, None], level_one[:, None], coarse), dim=1)

    def half_stack(self, flat: torch.Tensor) -> torch.Tensor:
        """(levels − 2, Σ tiles' level-1 samples): every tile's levels 2 … levels−1 evaluated by the
        cubic B-spline on its level-1 samples (zeros for levels a tile does not have). Channels
        first: with each level a strided column, the products' backward ran 30× slower (2.4 s
        against 0.08 s a CT step)."""
        parts = []
        for t, shape in enumerate(self.shapes):
            half = level_shape(shape, 1)
            count = math.prod(half)
            columns = [flat.new_zeros(count)] * (self.layout.levels - 2)
            for level, grid in enumerate(self.tile_grids(flat, t), start=self.tile_first[t]):
                if level >= 2:
                    mats = [getattr(self, f"_half_{rows}_{level}") for rows in half]
                    columns[level - 2] = _separable(grid, mats).reshape(-1)
            parts.append(torch.stack(columns) if columns else flat.new_zeros((0, count)))
        return torch.cat(parts, dim=1) if parts else flat.new_zeros((self.layout.levels - 2, 0))

    def dense_features(self, flat: torch.Tensor, tile: int) -> torch.Tensor:
        """(levels, voxels) features of every voxel of one tile, channels first, in raster order.

        Linear upsampling by 2^l is separable: one small matrix per axis (``interpolation_matrix``,
        the decoder's own map), applied as three matrix products. Their backward is two more, where
        ``F.interpolate``'s backward is a scatter that took a third of a step.
        """
        shape = self.shapes[tile]
        n = int(np.prod(shape))
        grids = self.tile_grids(flat, tile)
        first = self.tile_first[tile]
        out = [flat.new_zeros(n)] * first
        for level, grid in enumerate(grids, start=first):
            if level == 0:
                out.append(grid.reshape(-1))
                continue
            mats = [self._matrix(size, level) for size in shape]
            out.append(_separable(grid, mats).reshape(-1))
        # stacked, not assigned into a buffer: each in-place slice copy would clone the whole
        # gradient in the backward
        out += [flat.new_zeros(n)] * (self.layout.levels - len(out))
        return torch.stack(out)

    def _matrix(self, size: int, level: int) -> torch.Tensor:
        """The (size × ⌈size/2^level⌉) upsampling matrix of one axis, the decoder's (cached)."""
        key = (size, level)
        matrix = self._matrices.get(key)
        if matrix is None or matrix.device != self.flat.device:
            dense = axis_matrix(size, level, np.arange(size), self.upsampling)
            matrix = torch.from_numpy(dense).to(self.flat.device)
            self._matrices[key] = matrix
        return matrix

    # -- rate -----------------------------------------------------------------------------------
    def scales(self, flat: torch.Tensor) -> torch.Tensor:
        """Each tile level's Laplace scale: the maximum-likelihood one, mean |latent| (not trained)."""
        return _segment_scales(flat, self.seg_size)

    def rate_terms(self, flat: torch.Tensor, centre: torch.Tensor | None = None) -> torch.Tensor:
        """Each latent's Laplace scale (its tile level's), for :func:`drawn_bits`. (Gathering it from
        the levels' scales inside the compiled step instead was tried and measured no faster.)
        ``centre``: the latents' means (:meth:`rate_centres`), whose distances set the base scales.

        With the context model, the tile level's scale code is the base, and the learned per-level
        correction and slopes times the latent's contexts (refreshed by :meth:`refresh_contexts`)
        move it: the file's model 3, with a continuous code (gradients reach the slopes).

        The rate is always taken over every latent: estimated on a random share and weighted up, its
        gradient reaches a few latents a step with large values, and Adam's second moment, inflated by
        them, then damps the distortion's steps (on the CT a 250-step fit lost ~5 dB that way).
        """
        distance = flat if centre is None else flat - centre
        scales = torch.repeat_interleave(self.scales(distance), self.seg_size)
        if not self.context:
            return scales
        # each segment's parameters repeated over its latents: a gather per latent (entropy[level])
        # has a scatter for a backward, 4× slower on the MRI's million latents
        n = flat.numel()
        p = [torch.repeat_interleave(self.entropy[self.seg_level, k], self.seg_size, output_size=n)
             for k in range(4)]
        code = (16 * (torch.log2(scales) + 6) + p[0] + p[1] * self.contexts[0] + p[2] * self.contexts[1]
                + p[3] * self.contexts[2])
        return torch.exp2(code.clamp(1, 255) / 16 - 6)

    def rate_centres(self) -> torch.Tensor:
        """Each latent's Laplace mean (model 4: the level's weights times the latent's coarser value
        and neighbour means, all re-measured with the contexts, constant between); a zero scalar for
        models 2 and 3."""
        return self.centre if self.mean else self.flat.new_zeros(())

    @torch.no_grad()
    def refresh_contexts(self) -> None:
        """Recompute every latent's contexts (first-group flag, neighbourhood and coarser bins, and
        for model 4 the coarser value and neighbour means) from the rounded latents, as the file's
        coder will see them."""
        if not self.context:
            return
        rounded = torch.round(self.flat.detach()).cpu()
        parts = torch.zeros((3, rounded.numel()))
        means = torch.zeros((MEAN_TERMS, rounded.numel())) if self.mean else None
        for t in range(len(self.shapes)):
            grids = [g.numpy().astype(np.int64) for g in self.tile_grids(rounded, t)]
            for k, index in enumerate(self.tile_segments[t]):
                start, size, _ = self.segments[index]
                coarse = coarser_level(grids, k)
                first, near, coarse_bin = level_contexts(grids[k], coarse)
                stacked = np.stack([first.reshape(-1), near.reshape(-1), coarse_bin.reshape(-1)])
                parts[:, start:start + size] = torch.from_numpy(stacked.astype(np.float32))
                if means is not None:
                    features = level_mean_features(grids[k], coarse).reshape(MEAN_TERMS, -1)
                    means[:, start:start + size] = torch.from_numpy(features)
        self.contexts.copy_(parts.to(self.contexts.device))
        if means is not None:
            self._fit_means(rounded, means)

    def _fit_means(self, rounded: torch.Tensor, features: torch.Tensor) -> None:
        """Model 4's weights, level by level, moved to the least-absolute-deviation fit of the rounded
        latents on their features (a Laplace's maximum-likelihood centre; a few reweighted least-squares
        passes from the last weights), and the centres they give. Fitted, not trained by gradient: a
        per-latent weight lookup and its backward cost a compiled MRI step 60 % more."""
        weights = self.mean_weights.cpu().numpy().astype(np.float64)
        values = rounded.numpy()
        table = features.numpy()
        for level, rows in enumerate(self._fit_rows):
            if rows.size and values[rows].any():
                weights[level] = lad_fit(table[:, rows].T.astype(np.float64),
                                         values[rows].astype(np.float64), weights[level], iterations=4)
        self.mean_weights.copy_(torch.from_numpy(weights.astype(np.float32)))
        centre = (self.mean_weights.cpu()[self._level_of].T * features).sum(0)
        self.mean_features.copy_(features.to(self.mean_features.device))
        self.centre.copy_(centre.to(self.centre.device))

    def context_model(self) -> ContextModel:
        """The file's context model from the learned slopes (and mean weights), rounded to whole codes."""
        mean = MEAN_UNIT * self.mean_weights.detach().cpu().numpy() if self.mean else None
        return ContextModel.from_array(self.entropy.detach().cpu().numpy()[:, 1:], mean)

    def coarse_rate_terms(self, coarse: torch.Tensor) -> torch.Tensor:
        """:meth:`rate_terms` of the coarser levels alone (``coarse`` is ``flat[fine_size:]``)."""
        lengths = self.seg_size[self.fine_segments:]
        return torch.repeat_interleave(_segment_scales(coarse, lengths), lengths)

    def fine_scales(self, fine: torch.Tensor) -> torch.Tensor:
        """Each tile's level-0 Laplace scale, indexed by tile, from ``fine`` (that level of every
        tile, quantised as the step sees it: the scale of noisy latents is not that of the clean)."""
        return _segment_scales(fine, self.seg_size[:self.fine_segments])

    @torch.no_grad()
    def rounded_bits(self) -> float:
        """Estimated bits of ``round(flat)`` (see :meth:`_histogram_bits`; the context model's
        per-latent scales need a pass over every latent)."""
        if self.context:
            return float(self.bits(torch.round(self.flat.detach())))
        return self._histogram_bits()

    def _histogram_bits(self) -> float:
        """``bits(round(flat))`` from each level's histogram of |latent|: a Laplace's bits for an
        integer depend on its magnitude alone, so a pass of counting replaces a pass of logarithms
        over every latent (0.2 s on the MRI's 10 M, every controller update)."""
        magnitude = torch.round(self.flat.detach()).abs_().to(torch.int32)
        total = 0.0
        for offset, size, _ in self.segments:
            counts = torch.bincount(magnitude[offset:offset + size])
            values = torch.arange(counts.numel(), dtype=torch.float32, device=counts.device)
            scale = ((counts * values).sum() / size).clamp(*SCALE_RANGE)
            total += float((counts * laplace_bits(values, scale)).sum())
        return total

    def bits(self, flat: torch.Tensor) -> torch.Tensor:
        """Estimated coded bits of the latents ``flat``, each tile level at its own scale (and, for
        model 4, each latent about its predicted mean)."""
        centre = self.rate_centres()
        return drawn_bits(flat - centre, self.rate_terms(flat, centre))


def _bspline_taps(t: torch.Tensor) -> torch.Tensor:
    """The cubic B-spline's weights on samples ⌊q⌋−1 … ⌊q⌋+2 at fractional offsets ``t``: (…, 4)."""
    t2, t3 = t * t, t * t * t
    return torch.stack(((1 - t) ** 3, 4 - 6 * t2 + 3 * t3, 1 + 3 * t + 3 * t2 - 3 * t3, t3), dim=-1) / 6


def _separable(grid: torch.Tensor, mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """``grid`` (1-3 axes) with one matrix applied along each axis: (rows_0, rows_1, …)."""
    if grid.dim() == 1:
        return mats[0] @ grid
    if grid.dim() == 2:
        return mats[0] @ (grid @ mats[1].T)
    t = mats[1] @ (grid @ mats[2].T)                                             # (n0, r1, r2)
    return (mats[0] @ t.reshape(t.shape[0], -1)).reshape(mats[0].shape[0], *t.shape[1:])


def _segment_scales(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean |value| of each consecutive segment of ``lengths``, within ``SCALE_RANGE``."""
    return torch.segment_reduce(values.detach().abs(), "mean", lengths=lengths).clamp(*SCALE_RANGE)


def drawn_bits(flat: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Bits of the latents ``flat`` under zero-mean Laplaces of per-latent ``scale``."""
    return laplace_bits(flat, scale).sum()

