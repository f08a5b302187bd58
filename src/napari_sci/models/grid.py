"""Latent-grid model family, the numpy side: decoding a box of a tile (format 3, models 2–6).

A tile's value at a voxel is ``synthesis(features)``: the features are the tile's latent levels, each
linearly interpolated at the voxel (level ``l`` has ``⌈s/2^l⌉`` samples along an axis of ``s`` voxels and
voxel ``i`` sits at ``(i + 0.5)/2^l − 0.5`` in its coordinates), and the synthesis is a ReLU MLP shared by
every tile of the file (docs/format.md, "Version 3"). Decoding needs numpy and constriction only and
interpolates just the voxels asked for, so a slice costs a slice.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np

from napari_sci.base.grid_geometry import GridLayout
from napari_sci.io import latent_context
from napari_sci.io import residual as residual_coding
from napari_sci.io.container import SciContents
from napari_sci.io.exact_tiles import decode_exact
from napari_sci.io.format import KIND_EXACT, grid_section
from napari_sci.io.latent_context import ContextModel
from napari_sci.io.latents import decode_tile
from napari_sci.io.loop_filter import LoopFilter, split_choice
from napari_sci.io.residual import ResidualModel
from napari_sci.io.weights import decode_payload, split_tensors
from napari_sci.models import residual_blocks

Box = tuple[tuple[int, int], ...]


def interpolation(size: int, level: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, upper weight) that interpolate ``level`` at voxels ``start..stop-1``."""
    return interpolation_at(size, level, np.arange(start, stop))


def interpolation_at(size: int, level: int, voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, upper weight) that interpolate ``level`` at the voxel indices
    ``voxels`` of an axis of ``size`` voxels."""
    n = -(-size // (1 << level))
    position = (np.asarray(voxels, dtype=np.float64) + 0.5) / (1 << level) - 0.5
    position = np.clip(position, 0.0, n - 1.0)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    return lower, upper, (position - lower).astype(np.float32)


def bspline_weights(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline's weights on samples ⌊q⌋−1 … ⌊q⌋+2 at fractional offsets ``t`` (…, 4)."""
    t = np.asarray(t, np.float64)[..., None]
    return np.concatenate([(1 - t) ** 3, 4 - 6 * t ** 2 + 3 * t ** 3,
                           1 + 3 * t + 3 * t ** 2 - 3 * t ** 3, t ** 3], axis=-1) / 6


def spline_taps(q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), both (len(q), 4): the cubic B-spline of an axis of ``n`` samples at
    positions ``q`` (clamped to [0, n − 1], edge samples repeated)."""
    q = np.clip(np.asarray(q, np.float64), 0.0, n - 1.0)
    f = np.floor(q)
    return np.clip(f[:, None].astype(np.int64) + np.arange(-1, 3), 0, n - 1), bspline_weights(q - f)


def bspline_matrix(rows: int, levels_down: int) -> np.ndarray:
    """(rows × ⌈rows/2^levels_down⌉) float64: a grid ``levels_down`` levels coarser than an axis of
    ``rows`` samples, evaluated by the cubic B-spline at those samples (edge samples repeated)."""
    n = -(-rows // (1 << levels_down))
    taps, weights = spline_taps((np.arange(rows) + 0.5) / (1 << levels_down) - 0.5, n)
    out = np.zeros((rows, n))
    np.add.at(out, (np.repeat(np.arange(rows), 4), taps.reshape(-1)), weights.reshape(-1))
    return out


def axis_taps(size: int, level: int, voxels: np.ndarray, upsampling: str = "linear"
              ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), both (len(voxels), taps): level ``level`` of an axis of ``size`` voxels at
    ``voxels`` is Σ weights · level[indices]. ``bspline`` (models 5 and 6): level 1 by the cubic
    B-spline at the voxels (4 taps); levels ≥ 2 by the B-spline on level 1's samples, then linearly
    from them (8 taps; docs/format.md). Work and memory grow with the voxels asked for, never with the
    axis (a hostile 2^24-voxel axis must not build a dense matrix)."""
    voxels = np.asarray(voxels)
    n = -(-size // (1 << level))
    if upsampling != "bspline" or level == 0:
        lower, upper, weight = interpolation_at(size, level, voxels)
        return np.stack([lower, upper], 1), np.stack([1 - weight, weight], 1).astype(np.float32)
    if level == 1:
        index, weight = spline_taps((voxels + 0.5) / 2 - 0.5, n)
        return index, weight.astype(np.float32)
    lower, upper, w = interpolation_at(size, 1, voxels)
    w = w.astype(np.float64)[:, None]
    i_low, w_low = spline_taps((lower + 0.5) / (1 << (level - 1)) - 0.5, n)
    i_up, w_up = spline_taps((upper + 0.5) / (1 << (level - 1)) - 0.5, n)
    return (np.concatenate([i_low, i_up], 1),
            np.concatenate([(1 - w) * w_low, w * w_up], 1).astype(np.float32))


def axis_matrix(size: int, level: int, voxels: np.ndarray, upsampling: str = "linear") -> np.ndarray:
    """(len(voxels) × ⌈size/2^level⌉) float32: :func:`axis_taps` as a dense matrix (the trainer's
    every-voxel step, on real tiles)."""
    index, weight = axis_taps(size, level, voxels, upsampling)
    out = np.zeros((index.shape[0], -(-size // (1 << level))), np.float32)
    np.add.at(out, (np.repeat(np.arange(index.shape[0]), index.shape[1]), index.reshape(-1)),
              weight.reshape(-1))
    return out


def _taps(size: int, level: int, voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`axis_taps` (B-spline), kept for a run of up to ``RUN_TAPS_VOXELS`` consecutive voxels: a
    slider revisits the same tiles' ranges plane after plane (the cache holds at most ~50 MB)."""
    voxels = np.asarray(voxels)
    if 0 < voxels.size <= RUN_TAPS_VOXELS and bool(np.all(np.diff(voxels) == 1)):
        return _run_taps(size, level, int(voxels[0]), int(voxels.size))
    return axis_taps(size, level, voxels, "bspline")


RUN_TAPS_VOXELS = 1024


@functools.lru_cache(maxsize=512)  # a plane of the MRI's 15 tiles asks for ~230 runs
def _run_taps(size: int, level: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    index, weight = axis_taps(size, level, np.arange(start, start + count), "bspline")
    index.flags.writeable = False
    weight.flags.writeable = False
    return index, weight


def interpolate_box(grid: np.ndarray, level: int, tile_shape: Sequence[int], box: Box,
                    upsampling: str = "linear") -> np.ndarray:
    """Level ``level`` of a tile, upsampled on the voxels of ``box`` (tile coordinates)."""
    return interpolate_at(grid, level, tile_shape, [np.arange(start, stop) for start, stop in box],
                          upsampling)


def interpolate_at(grid: np.ndarray, level: int, tile_shape: Sequence[int],
                   picks: Sequence[np.ndarray], upsampling: str = "linear") -> np.ndarray:
    """Level ``level`` of a tile, upsampled on the grid of voxel indices ``picks`` (one array per
    axis: a box's ranges, or every 2^k-th voxel for a coarser view); linearly, or by the B-spline
    (``upsampling="bspline"``, :func:`axis_taps` along each axis in turn). The linear path is kept
    as it was, so that files of models 2–4 decode bit-identically."""
    out = grid.astype(np.float32)
    if upsampling == "bspline" and level >= 1:
        for axis, (size, voxels) in enumerate(zip(tile_shape, picks)):
            index, weight = _taps(int(size), level, voxels)
            shape = [1] * out.ndim
            shape[axis] = -1
            out = sum(np.take(out, index[:, k], axis=axis) * weight[:, k].reshape(shape)
                      for k in range(index.shape[1]))
        return np.ascontiguousarray(out, dtype=np.float32)
    for axis, (size, voxels) in enumerate(zip(tile_shape, picks)):
        lower, upper, weight = interpolation_at(int(size), level, voxels)
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
        w = np.asarray(next(tensors), np.float32).reshape(fan_out, fan_in)
        b = np.asarray(next(tensors), np.float32)
        x = x @ w.T + b
        if k < len(dims) - 1:
            np.maximum(x, 0, out=x)
    return x[:, 0]


def decode_synthesis(payload: bytes, layout: GridLayout) -> list[np.ndarray]:
    """The synthesis tensors (W₁, b₁, …) from their format-2-style payload."""
    sizes = layout.tensor_sizes()
    return split_tensors(decode_payload(payload, sizes), sizes)


def evaluate_tile_box(grids: Sequence[np.ndarray], weights: Sequence[np.ndarray], layout: GridLayout,
                      tile_shape: Sequence[int], box: Box, latent_step: float = 1.0) -> np.ndarray:
    """Normalised values (0 = value_min, 1 = value_max) of a tile on ``box`` (tile coordinates);
    the stored integer latents count ``latent_step`` each."""
    return evaluate_tile_at(grids, weights, layout, tile_shape,
                            [np.arange(start, stop) for start, stop in box], latent_step)


def evaluate_tile_at(grids: Sequence[np.ndarray], weights: Sequence[np.ndarray], layout: GridLayout,
                     tile_shape: Sequence[int], picks: Sequence[np.ndarray],
                     latent_step: float = 1.0) -> np.ndarray:
    """Normalised values of a tile on the grid of voxel indices ``picks`` (one array per axis)."""
    out_shape = tuple(len(p) for p in picks)
    count = int(np.prod(out_shape))
    features = np.zeros((count, layout.levels), dtype=np.float32)
    for level, grid in enumerate(grids):
        if grid.any():
            features[:, level] = interpolate_at(grid, level, tile_shape, picks,
                                                layout.upsampling).reshape(-1)
    if latent_step != 1.0:
        features *= np.float32(latent_step)
    return synthesise(features, weights, layout).reshape(out_shape)


class GridTiles:
    """The latent-grid tiles of one file, decoded on demand: latents per tile once, then any box.

    ``payloads[i]`` is block ``i``'s coded latents; ``sizes[i]`` its shape. Thread-safe; the decoded
    latents of a tile are kept (about 1.15 × 4 bytes a voxel of the tiles touched so far).
    """

    def __init__(self, layout: GridLayout, synthesis: bytes, payloads: Sequence[bytes],
                 sizes: Sequence[Sequence[int]], low: float = 0.0, span: float = 1.0,
                 latent_step: float = 1.0, context: ContextModel | None = None,
                 exact: Sequence[bool] = (), dtype: np.dtype | None = None,
                 residual: ResidualModel | None = None, filtered: bool = False,
                 shared_filter: LoopFilter | None = None) -> None:
        self.exact = [bool(e) for e in exact] or [False] * len(payloads)  # kind 4: stored losslessly
        self.dtype = np.dtype(dtype) if dtype is not None else None
        self._values: dict[int, np.ndarray] = {}
        self.step = np.float32(latent_step)
        self.context = context  # models 3 and 4: the latents are context-coded
        self.low = np.float32(low)
        self.span = np.float32(span)
        self.layout = layout
        self.weights = decode_synthesis(synthesis, layout)
        self.payloads = payloads
        self.sizes = [tuple(int(s) for s in size) for size in sizes]
        self._latents: dict[int, list[np.ndarray]] = {}
        self.residual = residual  # models 7–14: each tile payload is latents + a residual stream
        self.filtered = filtered  # models 13 and 14: a loop filter choice between the two
        self.shared_filter = shared_filter
        self._filters: dict[int, LoopFilter | None] = {}
        self._residuals: dict[int, tuple[residual_coding.TileLayout, np.ndarray]] = {}
        # a lock per tile: two threads never decode one tile twice, and different tiles decode at once
        self._locks = [threading.Lock() for _ in payloads]

    def latents(self, index: int) -> list[np.ndarray]:
        with self._locks[index]:
            grids = self._latents.get(index)
            if grids is None:
                payload = self.payloads[index]
                if self.residual is not None:
                    payload = residual_coding.split_payload(payload)[0]
                if self.context is not None:
                    grids = latent_context.decode_tile(payload, self.sizes[index],
                                                       self.layout.levels, self.context)
                else:
                    grids = decode_tile(payload, self.sizes[index], self.layout.levels)
                self._latents[index] = grids
            return grids

    def residual_coefficients(self, index: int) -> tuple[residual_coding.TileLayout, np.ndarray] | None:
        """The tile's residual coefficients and their layout, decoded once; ``None`` without a
        residual layer."""
        if self.residual is None:
            return None
        grids = self.latents(index)
        with self._locks[index]:
            decoded = self._residuals.get(index)
            if decoded is None:
                layout = residual_coding.tile_layout(self.sizes[index], grids[1] if len(grids) > 1 else None,
                                                     self.residual.block)
                stream = self._filter_and_stream(index)[1]
                decoded = (layout, residual_coding.decode(stream, layout, self.residual))
                self._residuals[index] = decoded
            return decoded

    def _filter_and_stream(self, index: int) -> tuple[LoopFilter | None, bytes]:
        rest = residual_coding.split_payload(self.payloads[index])[1]
        return split_choice(rest, self.shared_filter) if self.filtered else (None, rest)

    def loop_filter(self, index: int) -> LoopFilter | None:
        """The loop filter of latent tile ``index`` (models 13 and 14), ``None`` if it has none; read
        from the payload once (every request asks for the filters of the tiles it touches)."""
        if not self.filtered or self.exact[index]:
            return None
        with self._locks[index]:
            if index not in self._filters:
                self._filters[index] = self._filter_and_stream(index)[0]
            return self._filters[index]

    def residual_values(self, index: int, local: Box | None = None) -> np.ndarray | None:
        """The tile's residual layer (float32, normalised values) on the tile-local box ``local``
        (default: the whole tile); ``None`` without one."""
        decoded = self.residual_coefficients(index)
        if decoded is None or self.residual is None:
            return None
        layout, coefficients = decoded
        return residual_blocks.reconstruct(layout, coefficients, self.residual.step, local)

    @classmethod
    def from_contents(cls, contents: SciContents, sizes: Sequence[Sequence[int]]) -> GridTiles:
        header = contents.header
        section = grid_section(header)
        return cls(section.layout, section.synthesis, contents.payloads, sizes, header.value_min,
                   header.value_max - header.value_min, section.latent_step, section.context,
                   header.blocks["kind"] == KIND_EXACT, header.dtype, section.residual,
                   section.filtered, section.shared_filter)

    def exact_values(self, index: int) -> np.ndarray:
        """An exact tile's values (float32, which holds them exactly), decompressed once."""
        with self._locks[index]:
            values = self._values.get(index)
            if values is None:
                if self.dtype is None:
                    raise ValueError("exact tiles need the file's dtype")
                values = decode_exact(self.payloads[index], self.sizes[index], self.dtype).astype(np.float32)
                self._values[index] = values
            return values

    def evaluate(self, index: int, local: Box) -> np.ndarray:
        """Values (float32, data units) of tile ``index`` on the tile-local box ``local``."""
        if self.exact[index]:
            return self.exact_values(index)[tuple(slice(a, b) for a, b in local)].copy()
        y = evaluate_tile_box(self.latents(index), self.weights, self.layout, self.sizes[index], local,
                              self.step)
        residual = self.residual_values(index, local)
        if residual is not None:
            y = y + residual
        return self.low + y * self.span

    def evaluate_at(self, index: int, picks: Sequence[np.ndarray]) -> np.ndarray:
        """Values of tile ``index`` on the grid of tile-local voxel indices ``picks`` (one sorted array
        per axis): only those voxels are interpolated and synthesised (multiscale reading)."""
        if self.exact[index]:
            return self.exact_values(index)[np.ix_(*picks)]
        y = evaluate_tile_at(self.latents(index), self.weights, self.layout, self.sizes[index],
                             picks, self.step)
        box = tuple((int(p.min()), int(p.max()) + 1) for p in picks) if all(len(p) for p in picks) else None
        residual = self.residual_values(index, box) if box is not None else None
        if residual is not None and box is not None:
            y = y + residual[np.ix_(*(np.asarray(p) - lo for p, (lo, _) in zip(picks, box)))]
        return self.low + y * self.span
