"""Context-coded tile latents (format 3, model 3): each latent's Laplace scale from what is decoded.

A level is decoded coarsest first, in 2^ndim parity groups (docs/format.md, "Model 3"); a latent's
scale code is its tile level's base plus three learned slopes times small integers: whether it is in
the first group, a bin of the mean |latent| of its already-decoded neighbours and a bin of the coarser
level interpolated at it. Every group is one vectorised pass (no loop over latents), and every quantity
is an integer or an exact dyadic, so encoder and decoder agree bit for bit on any machine.

Model 4 centres each latent's Laplace on a mean predicted from the same decoded samples: per level,
four learned weights times the coarser level's signed value and the means of the decoded face, edge
and corner neighbours, in integer arithmetic (docs/format.md, "Model 4").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from napari_sci.base.grid_geometry import level_shape, levels_for
from napari_sci.errors import SciFormatError
from napari_sci.io.laplace_codes import (
    LATENT_LIMIT,
    SCALE_CODE_ZERO,
    SCALES,
    laplace_bits_each,
    scale_code_for,
)

THRESHOLDS = np.array([1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256], np.int64)
BINS = len(THRESHOLDS) + 1  # a bin is 0 … 16
SLOPE_LIMIT = 127           # the three per-level parameters are i8
MEAN_TERMS = 4              # model 4, per level: the coarser value's weight, then faces, edges, corners
MEAN_UNIT = 32              # a mean weight is in 1/32
MEAN_K = 64 * 27720         # 64 · lcm(1 … 12): every term of a mean's numerator is an integer
MEAN16_LIMIT = 16 * LATENT_LIMIT


@dataclass(frozen=True)
class ContextModel:
    """Per level: the first group's offset, the slopes per neighbourhood bin and per coarser-level bin
    (scale-code units, 1/16 octave)."""

    first: tuple[int, ...]
    near: tuple[int, ...]
    coarse: tuple[int, ...]
    mean: tuple[tuple[int, ...], ...] | None = None  # model 4: per level (wc, w1, w2, w3) in 1/32

    @classmethod
    def zeros(cls, levels: int, mean: bool = False) -> ContextModel:
        return cls((0,) * levels, (0,) * levels, (0,) * levels,
                   ((0,) * MEAN_TERMS,) * levels if mean else None)

    @classmethod
    def from_array(cls, values: np.ndarray, mean: np.ndarray | None = None) -> ContextModel:
        """From a (levels, 3) array of slopes and, for model 4, a (levels, 4) array of mean weights
        in 1/32; both rounded and clipped to the i8 range."""
        v = np.clip(np.rint(np.asarray(values, np.float64)), -SLOPE_LIMIT, SLOPE_LIMIT).astype(int)
        weights = None
        if mean is not None:
            m = np.clip(np.rint(np.asarray(mean, np.float64)), -SLOPE_LIMIT, SLOPE_LIMIT).astype(int)
            weights = tuple(tuple(row) for row in m.reshape(len(v), MEAN_TERMS).tolist())
        return cls(tuple(v[:, 0].tolist()), tuple(v[:, 1].tolist()), tuple(v[:, 2].tolist()), weights)

    def array(self) -> np.ndarray:
        return np.stack([self.first, self.near, self.coarse], axis=1).astype(np.int64)

    def mean_array(self) -> np.ndarray:
        """(levels, 4) mean weights in 1/32 (zeros for model 3)."""
        if self.mean is None:
            return np.zeros((self.levels, MEAN_TERMS), np.int64)
        return np.asarray(self.mean, np.int64).reshape(self.levels, MEAN_TERMS)

    @property
    def levels(self) -> int:
        return len(self.first)

    @staticmethod
    def packed_size(levels: int, mean: bool) -> int:
        return (3 + (MEAN_TERMS if mean else 0)) * levels

    def pack(self) -> bytes:
        out = np.asarray(self.array(), "<i1").reshape(-1).tobytes()
        if self.mean is not None:
            out += np.asarray(self.mean_array(), "<i1").reshape(-1).tobytes()
        return out

    @classmethod
    def unpack(cls, data: bytes, levels: int, mean: bool = False) -> ContextModel:
        if len(data) != cls.packed_size(levels, mean):
            raise SciFormatError(f"context model of {len(data)} bytes does not fit {levels} levels")
        v = np.frombuffer(data, "<i1", count=3 * levels).reshape(levels, 3).astype(int)  # all of i8
        weights = None
        if mean:
            m = np.frombuffer(data, "<i1", offset=3 * levels).reshape(levels, MEAN_TERMS).astype(int)
            weights = tuple(tuple(row) for row in m.tolist())
        return cls(tuple(v[:, 0].tolist()), tuple(v[:, 1].tolist()), tuple(v[:, 2].tolist()), weights)

    def offsets(self, level: int, first: np.ndarray, near: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """What the contexts add to a latent's base code at ``level``."""
        return (self.first[level] * first.astype(np.int64) + self.near[level] * near.astype(np.int64)
                + self.coarse[level] * coarse.astype(np.int64))


@cache
def group_order(ndim: int) -> tuple[int, ...]:
    """Parity groups in decoding order: 0, then by decreasing count of odd coordinates, then by id."""
    rest = sorted(range(1, 1 << ndim), key=lambda g: (-bin(g).count("1"), g))
    return (0, *rest)


def parity_view(grid: np.ndarray, group: int) -> np.ndarray:
    """The samples of parity group ``group`` as a strided view, in C order (axis 0 the top bit)."""
    ndim = grid.ndim
    return grid[tuple(slice((group >> (ndim - 1 - axis)) & 1, None, 2) for axis in range(ndim))]


def _bins(ratio: np.ndarray) -> np.ndarray:
    """The number of thresholds ``T_k`` with ``T_k ≤ 16 · ratio`` (exact: ``ratio`` is an exact dyadic
    or a quotient of small integers, never within rounding of a threshold)."""
    return np.searchsorted(THRESHOLDS, 16 * np.asarray(ratio, np.float64), side="right").astype(np.int8)


def coarse_bins(coarse: np.ndarray | None, shape: Sequence[int]) -> np.ndarray:
    """Bin of |the coarser level interpolated at each sample of a level of ``shape``| (0 without one)."""
    if coarse is None or not coarse.any():
        return np.zeros(tuple(shape), np.int8)
    return _bins(np.abs(_coarse_at(coarse, shape)))


def coarse_values(coarse: np.ndarray | None, shape: Sequence[int]) -> np.ndarray:
    """Model 4's ``V``: 64 × the coarser level interpolated at each sample, an integer (0 without one)."""
    if coarse is None or not coarse.any():
        return np.zeros(tuple(shape), np.int64)
    return np.rint(64 * _coarse_at(coarse, shape)).astype(np.int64)


def coarse_bins_and_values(coarse: np.ndarray | None,
                           shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`coarse_bins` and :func:`coarse_values` from one interpolation (the decoder's need)."""
    if coarse is None or not coarse.any():
        return np.zeros(tuple(shape), np.int8), np.zeros(tuple(shape), np.int64)
    interpolated = _coarse_at(coarse, shape)
    return _bins(np.abs(interpolated)), np.rint(64 * interpolated).astype(np.int64)


def _coarse_at(coarse: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The coarser level linearly interpolated at each sample of a level of ``shape``: weights 0, ¼,
    ¾ or 1 of integers, so exact in float64."""
    out = coarse.astype(np.float64)
    for axis, size in enumerate(shape):
        m = out.shape[axis]
        position = np.clip((np.arange(size) + 0.5) / 2 - 0.5, 0.0, m - 1.0)
        lower = np.floor(position).astype(np.int64)
        upper = np.minimum(lower + 1, m - 1)
        view = [1] * out.ndim
        view[axis] = -1
        a, b = out.take(lower, axis), out.take(upper, axis)
        out = a + (b - a) * (position - lower).reshape(view)
    return out


@cache
def _earlier_neighbours(ndim: int, group: int) -> tuple[tuple[int, ...], ...]:
    """Offsets ``d`` (each −1, 0 or 1, not all 0) whose sample lies in a group decoded before
    ``group``: the neighbour's group is ``group`` with the parity of every odd ``d_a`` flipped."""
    rank = {g: k for k, g in enumerate(group_order(ndim))}
    out = []
    for d in itertools.product((-1, 0, 1), repeat=ndim):
        flip = sum((abs(step) % 2) << (ndim - 1 - axis) for axis, step in enumerate(d))
        if any(d) and rank[group ^ flip] < rank[group]:
            out.append(d)
    return tuple(out)


def _padded_views(values: np.ndarray) -> dict[int, np.ndarray]:
    """Each parity group's view, zero-padded by one sample on each side (neighbours off the grid
    count as absent)."""
    ndim = values.ndim
    views = {}
    for group in range(1 << ndim):
        view = parity_view(values, group)
        padded = np.zeros(tuple(s + 2 for s in view.shape), values.dtype)
        padded[tuple(slice(1, 1 + s) for s in view.shape)] = view
        views[group] = padded
    return views


NearPlan = tuple[tuple[tuple[int, tuple[slice, ...]], ...], np.ndarray]


# Plans are cached for levels up to this many samples (a plan holds arrays of an eighth of that): a
# reader fed many shapes (the fuzzer, session 26: 4 GB) would otherwise keep 256 plans of any size.
PLAN_CACHE_SAMPLES = 1 << 21


def _near_plan(shape: tuple[int, ...], group: int) -> NearPlan:
    """:func:`_compute_near_plan`, cached for levels of at most ``PLAN_CACHE_SAMPLES`` samples."""
    if math.prod(shape) <= PLAN_CACHE_SAMPLES:
        return _cached_near_plan(shape, group)
    return _compute_near_plan(shape, group)


def _compute_near_plan(shape: tuple[int, ...], group: int) -> NearPlan:
    """For group ``group`` of a level of ``shape``: per earlier neighbour offset ``d``, the
    neighbour's group and the cut of its padded view that lines up with the group's samples (sample
    ``i = p + 2k``, ``p`` the group's parities, has its neighbour ``i + d`` at ``k + ⌊(p+d)/2⌋``); and
    how many such neighbours inside the grid each sample has. Geometry only: computed once per shape
    (the per-offset slicing was half of a cold slice's context work)."""
    ndim = len(shape)
    parity = [(group >> (ndim - 1 - axis)) & 1 for axis in range(ndim)]
    size = tuple(len(range(p, int(n), 2)) for p, n in zip(parity, shape))
    ones = _padded_views(np.ones(shape, np.int8))
    count = np.zeros(size, np.int8)   # at most 26
    cuts = []
    for d in _earlier_neighbours(ndim, group):
        target = [(p + step) for p, step in zip(parity, d)]
        neighbour = sum((t % 2) << (ndim - 1 - axis) for axis, t in enumerate(target))
        cut = tuple(slice(1 + t // 2, 1 + t // 2 + s) for t, s in zip(target, size))
        cuts.append((neighbour, cut))
        count += ones[neighbour][cut]
    count.flags.writeable = False
    return tuple(cuts), count


_cached_near_plan = lru_cache(maxsize=256)(_compute_near_plan)


def _neighbour_sum(views: dict[int, np.ndarray], cuts: Sequence[tuple[int, tuple[slice, ...]]],
                   shape: tuple[int, ...], dtype: type = np.int64) -> np.ndarray:
    """The sum over ``cuts`` (neighbour group, cut of its padded view) of ``views``: one group's
    samples' neighbour values, each cut a whole-group slice (no loop over samples)."""
    total = np.zeros(shape, dtype)
    for neighbour, cut in cuts:
        total += views[neighbour][cut]
    return total


ClassPlan = tuple[tuple[tuple[tuple[int, tuple[slice, ...]], ...], np.ndarray], ...]


def _class_plan(shape: tuple[int, ...], group: int) -> ClassPlan:
    """:func:`_compute_class_plan`, cached like :func:`_near_plan`."""
    if math.prod(shape) <= PLAN_CACHE_SAMPLES:
        return _cached_class_plan(shape, group)
    return _compute_class_plan(shape, group)


def _compute_class_plan(shape: tuple[int, ...], group: int) -> ClassPlan:
    """Model 4: :func:`_near_plan`'s neighbours split by how many coordinates of their offset are
    non-zero (faces, edges, corners): per class, its (group, cut) pairs and each sample's factor
    ``K / N_k`` (``K`` where a sample has no such neighbour: its sum is then 0 whatever the factor)."""
    cuts, count = _near_plan(shape, group)
    ndim = len(shape)
    ones = _padded_views(np.ones(shape, np.int8))
    out = []
    for k in range(1, ndim + 1):
        chosen = tuple(cut for d, cut in zip(_earlier_neighbours(ndim, group), cuts)
                       if sum(1 for step in d if step) == k)
        n = np.zeros(count.shape, np.int64)
        for neighbour, cut in chosen:
            n += ones[neighbour][cut]
        factor = MEAN_K // np.maximum(n, 1)
        factor.flags.writeable = False
        out.append((chosen, factor))
    return tuple(out)


_cached_class_plan = lru_cache(maxsize=256)(_compute_class_plan)


def _class_terms(value_views: dict[int, np.ndarray], shape: Sequence[int], group: int,
                 weights: Sequence[int]) -> np.ndarray | int:
    """``Σ_k w_k · S_k · (K / N_k)`` for group ``group``'s samples: the neighbour part of a mean's
    numerator, from the padded views of the decoded signed latents (classes of weight 0 skipped)."""
    out: np.ndarray | int = 0
    for w, (chosen, factor) in zip(weights[1:], _class_plan(tuple(int(s) for s in shape), group)):
        if not w or not chosen:
            continue
        out = out + int(w) * _neighbour_sum(value_views, chosen, factor.shape) * factor
    return out


def predicted_means(weights: Sequence[int], coarse_value: np.ndarray,
                    neighbours: np.ndarray | int) -> np.ndarray:
    """``μ16`` of docs/format.md "Model 4": 16 × the predicted mean, an integer, from the level's
    weights (1/32), ``V`` and the neighbour part of the numerator (:func:`_class_terms`)."""
    numerator = int(weights[0]) * 27720 * np.asarray(coarse_value, np.int64) + neighbours
    return np.clip((numerator + MEAN_K) // (2 * MEAN_K), -MEAN16_LIMIT, MEAN16_LIMIT)


def level_means(grid: np.ndarray, coarse: np.ndarray | None, weights: Sequence[int]) -> np.ndarray:
    """``μ16`` of every sample of a level whose values are all known (the encoder's view)."""
    values = coarse_values(coarse, grid.shape)
    out = np.zeros(grid.shape, np.int64)
    if not any(weights):
        return out
    views = _padded_views(np.asarray(grid, np.int64))
    for g in group_order(grid.ndim):
        neighbours = _class_terms(views, grid.shape, g, weights) if g else 0
        parity_view(out, g)[...] = predicted_means(weights, parity_view(values, g), neighbours)
    return out


def level_mean_features(grid: np.ndarray, coarse: np.ndarray | None) -> np.ndarray:
    """(4, *shape) float32: the coarser value and the face, edge and corner means that model 4's
    weights multiply (0 where a class has no decoded neighbour; classes beyond ndim are 0): the
    trainer's view of the mean, continuous in the weights."""
    out = np.zeros((MEAN_TERMS, *grid.shape), np.float32)
    out[0] = coarse_values(coarse, grid.shape) / 64.0
    views = _padded_views(np.asarray(grid, np.int64))
    for g in group_order(grid.ndim)[1:]:
        for k, (chosen, factor) in enumerate(_class_plan(tuple(grid.shape), g), start=1):
            total = _neighbour_sum(views, chosen, factor.shape)
            parity_view(out[k], g)[...] = total * factor / MEAN_K  # S_k / N_k
    return out


def _near_bins(magnitude_views: dict[int, np.ndarray], shape: Sequence[int], group: int) -> np.ndarray:
    """Neighbourhood bins of group ``group``'s samples from the padded views of |latents| (those not
    decoded yet are 0 there)."""
    cuts, count = _near_plan(tuple(int(n) for n in shape), group)
    total = _neighbour_sum(magnitude_views, cuts, count.shape, np.int32)  # at most 26 · 4095
    out = np.zeros(count.shape, np.int8)
    known = total > 0  # a zero sum is bin 0 with or without neighbours: most samples of sparse levels
    out[known] = _bins(total[known] / count[known])
    return out


def level_contexts(grid: np.ndarray, coarse: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first-group flag, neighbourhood bin, coarser bin) of every sample of a level whose values are
    all known (the encoder's and the trainer's view; the decoder builds the same group by group)."""
    near = np.zeros(grid.shape, np.int8)
    first = np.zeros(grid.shape, bool)
    parity_view(first, 0)[...] = True
    magnitudes = _padded_views(np.abs(grid.astype(np.int32)))
    for g in group_order(grid.ndim)[1:]:
        parity_view(near, g)[...] = _near_bins(magnitudes, grid.shape, g)
    return first, near, coarse_bins(coarse, grid.shape)


def _bits_each(magnitudes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return laplace_bits_each(magnitudes, SCALES[codes])


def best_base(magnitude: np.ndarray, offsets: np.ndarray, unit: int = 1) -> int:
    """The base code that codes a level in the fewest bits, given its contexts' offsets (0 when the
    level is all zero); scored on the joint histogram of (offset, distance). ``magnitude`` is each
    latent's distance from its mean in 1/``unit`` (model 3: |latent|, unit 1; model 4: |16q − μ16|,
    unit 16)."""
    if not magnitude.any():
        return SCALE_CODE_ZERO
    radix = int(magnitude.max()) + 1
    keys, counts = np.unique(offsets.ravel().astype(np.int64) * radix + magnitude.ravel(),
                             return_counts=True)
    pairs = np.divmod(keys, radix)
    distance = pairs[1] / unit
    guess = scale_code_for(max(float(magnitude.mean()) / unit, 2.0 ** -6))

    def cost(base: int) -> float:
        return float(np.dot(counts, _bits_each(distance, np.clip(base + pairs[0], 1, 255))))

    best = min(range(max(1, guess - 48), min(255, guess + 48) + 1, 4), key=cost)
    return min(range(max(1, best - 3), min(255, best + 3) + 1), key=cost)


def coarser_level(grids: Sequence[np.ndarray], level: int) -> np.ndarray | None:
    """The level a level's coarser context comes from: the next one, unless it is absent or all zero
    (an all-zero level is not coded: its base is 0)."""
    return grids[level + 1] if level + 1 < len(grids) and grids[level + 1].any() else None


def encode_tile(latents: Sequence[np.ndarray], model: ContextModel,
                bases: Sequence[int] | None = None) -> bytes:
    """A model 3 (or, with mean weights, model 4) tile payload from its integer latents (level 0
    first); the bases are searched on the exact bits unless given."""
    import constriction

    grids = [np.clip(np.asarray(g), -LATENT_LIMIT, LATENT_LIMIT).astype(np.int64) for g in latents]
    chosen = [int(b) for b in bases] if bases is not None else [0] * len(grids)
    weights = model.mean_array()
    symbols, scales, means = [], [], []
    for level in range(len(grids) - 1, -1, -1):
        grid = grids[level]
        if not grid.any():
            chosen[level] = SCALE_CODE_ZERO
            continue
        coarse = coarser_level(grids, level)
        first, near, coarse_bin = level_contexts(grid, coarse)
        offsets = model.offsets(level, first, near, coarse_bin)
        mean16 = level_means(grid, coarse, weights[level])
        if bases is None:
            chosen[level] = best_base(np.abs(16 * grid - mean16), offsets, 16)
        chosen[level] = int(np.clip(chosen[level], 1, 255))
        level_scales = scale_table(model, level, chosen[level])[first.astype(np.int64), near, coarse_bin]
        for g in group_order(grid.ndim):
            symbols.append(parity_view(grid, g).reshape(-1))
            scales.append(parity_view(level_scales, g).reshape(-1))
            means.append(parity_view(mean16, g).reshape(-1))
    coder = constriction.stream.stack.AnsCoder()
    if symbols:
        coder.encode_reverse(np.concatenate(symbols).astype(np.int32), _family(),
                             np.concatenate(means) / 16.0, np.concatenate(scales))
    return bytes(chosen) + coder.get_compressed().astype("<u4").tobytes()


def _family():  # type: ignore[no-untyped-def]
    import constriction

    return constriction.stream.model.QuantizedLaplace(-LATENT_LIMIT, LATENT_LIMIT)


def scale_table(model: ContextModel, level: int, base: int) -> np.ndarray:
    """(first flag, neighbourhood bin, coarser bin) → the Laplace scale of a latent at ``level`` with
    this base code (``SCALES`` of the clipped code): the encoder's and the decoder's one lookup."""
    first, near, coarse = np.ix_(np.arange(2), np.arange(BINS), np.arange(BINS))
    return SCALES[np.clip(base + model.offsets(level, first, near, coarse), 1, 255)]


def decode_tile(payload: bytes, tile_shape: Sequence[int], levels: int, model: ContextModel,
                ) -> list[np.ndarray]:
    """A model 3 or 4 tile's integer latents, level 0 first; a malformed payload raises
    ``SciFormatError``."""
    import constriction

    n_levels = levels_for(tile_shape, levels)
    if len(payload) < n_levels or (len(payload) - n_levels) % 4:
        raise SciFormatError(f"latent-grid tile payload of {len(payload)} bytes is malformed")
    bases = list(payload[:n_levels])
    words = np.frombuffer(payload, dtype="<u4", offset=n_levels).astype(np.uint32)
    grids: list[np.ndarray] = [np.zeros(0, np.int32)] * n_levels
    family = _family()
    weights = model.mean_array()
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        for level in range(n_levels - 1, -1, -1):
            shape = level_shape(tile_shape, level)
            grid = np.zeros(shape, np.int32)  # what the model reads (|q| ≤ 4095), no copy at the end
            grids[level] = grid
            if bases[level] == SCALE_CODE_ZERO:
                continue
            coarse_grid = coarser_level(grids, level)
            table = scale_table(model, level, bases[level])
            magnitudes = _padded_views(np.zeros(shape, np.int32))  # |latents| as groups decode
            predicted = bool(weights[level].any())  # model 4 with a mean at this level
            values = None
            if predicted:
                coarse, values = coarse_bins_and_values(coarse_grid, shape)
            else:
                coarse = coarse_bins(coarse_grid, shape)
            signed = _padded_views(np.zeros(shape, np.int64)) if predicted else {}
            for g in group_order(len(shape)):
                target = parity_view(grid, g)
                near = _near_bins(magnitudes, shape, g) if g else np.zeros(1, np.int8)
                scales = np.broadcast_to(table[int(g == 0)][near, parity_view(coarse, g)], target.shape)
                if values is not None:
                    neighbours = _class_terms(signed, shape, g, weights[level]) if g else 0
                    mean16 = predicted_means(weights[level], parity_view(values, g), neighbours)
                    means = mean16.reshape(-1) / 16.0
                else:
                    means = np.zeros(target.size)
                target[...] = coder.decode(family, means, scales.reshape(-1)).reshape(target.shape)
                inside = tuple(slice(1, 1 + s) for s in target.shape)
                magnitudes[g][inside] = np.abs(target)
                if predicted:
                    signed[g][inside] = target
    except (ValueError, RuntimeError, OverflowError) as error:
        raise SciFormatError(f"latent-grid tile payload cannot be decoded: {error}") from error
    return grids


MEAN_RADIX = 2 * MEAN16_LIMIT + 1  # |16q − μ16| is at most this minus one


def _level_table(tiles: Sequence[Sequence[np.ndarray]], level: int,
                 weights: Sequence[int] | None = None) -> np.ndarray:
    """(rows, 6) int64: tile, first flag, neighbourhood bin, coarser bin, distance, count — the joint
    histogram of one level's contexts and distances over the tiles that code it. The distance is
    |latent| (``weights`` None: model 3) or |16 · latent − μ16| under these mean weights (model 4)."""
    keys = []
    radix = LATENT_LIMIT + 1 if weights is None else MEAN_RADIX
    for t, grids in enumerate(tiles):
        if level >= len(grids) or not grids[level].any():
            continue
        grid = np.asarray(grids[level], np.int64)
        coarse = coarser_level(grids, level)
        first, near, coarse_bin = level_contexts(grid, coarse)
        if weights is None:
            distance = np.minimum(np.abs(grid), LATENT_LIMIT)
        else:
            distance = np.abs(16 * grid - level_means(grid, coarse, weights))
        keys.append(((((t * 2 + first.astype(np.int64)) * BINS + near) * BINS + coarse_bin)
                     * radix + distance).reshape(-1))
    if not keys:
        return np.zeros((0, 6), np.int64)
    unique, counts = np.unique(np.concatenate(keys), return_counts=True)
    rest, distance = np.divmod(unique, radix)
    rest, coarse_bin = np.divmod(rest, BINS)
    rest, near = np.divmod(rest, BINS)
    tile, first = np.divmod(rest, 2)
    return np.stack([tile, first, near, coarse_bin, distance, counts], axis=1)


def _level_bits(table: np.ndarray, first: int, near: int, coarse: int, unit: int = 1) -> float:
    """Bits of one level over its tiles with these slopes, each tile at its best base (distances in
    1/``unit``)."""
    if not table.size:
        return 0.0
    offsets = first * table[:, 1] + near * table[:, 2] + coarse * table[:, 3]
    bases = np.arange(1, 256, 2)
    bits = _bits_each(table[:, 4][:, None] / unit, np.clip(bases[None, :] + offsets[:, None], 1, 255))
    per_tile = np.zeros((int(table[:, 0].max()) + 1, bases.size))
    np.add.at(per_tile, table[:, 0], bits * table[:, 5][:, None])
    return float(per_tile.min(axis=1).sum())


def refine_context_model(tiles: Sequence[Sequence[np.ndarray]], start: ContextModel) -> ContextModel:
    """The slopes from ``start`` improved, level by level, by coordinate descent on the exact code
    length of these latents (training learned them on noisy latents and a continuous code); for
    model 4, each level's mean weights are first set to the best of the trained ones, a
    least-absolute-deviation fit on these latents and zero."""
    values = start.array()
    means = start.mean_array()
    for level in range(start.levels):
        unit = 1
        if start.mean is not None:
            means[level] = _best_mean_weights(tiles, level, values[level], means[level])
            unit = 16
        table = _level_table(tiles, level, means[level] if start.mean is not None else None)
        if not table.size:
            continue
        best = _level_bits(table, *values[level], unit=unit)
        for step in (8, 4, 2, 1):
            improved = True
            while improved:
                improved = False
                for k in range(3):
                    for sign in (1, -1):
                        trial = values[level].copy()
                        trial[k] = np.clip(trial[k] + sign * step, -SLOPE_LIMIT, SLOPE_LIMIT)
                        bits = _level_bits(table, *trial, unit=unit)
                        if bits < best - 1e-6:
                            best, values[level], improved = bits, trial, True
    return ContextModel.from_array(values, means if start.mean is not None else None)


def _best_mean_weights(tiles: Sequence[Sequence[np.ndarray]], level: int, slopes: np.ndarray,
                       trained: np.ndarray) -> np.ndarray:
    """Of the trained weights, a least-absolute-deviation fit and zero, the ones that code the level
    in the fewest bits under these slopes."""
    candidates = [np.asarray(trained, np.int64), np.zeros(MEAN_TERMS, np.int64)]
    fitted = _lad_weights(tiles, level)
    if fitted is not None:
        candidates.append(fitted)
    scored = []
    for weights in candidates:
        table = _level_table(tiles, level, weights)
        scored.append((_level_bits(table, *slopes, unit=16) if table.size else 0.0, weights))
    return min(scored, key=lambda item: item[0])[1]


def lad_fit(features: np.ndarray, values: np.ndarray, start: np.ndarray | None = None,
            iterations: int = 12) -> np.ndarray:
    """Weights ``w`` that make ``features @ w`` close to ``values`` in absolute deviation (a
    Laplace's maximum-likelihood centre), by iteratively reweighted least squares from ``start``
    (least squares without one); columns that are all zero keep weight 0."""
    used = np.flatnonzero(features.any(axis=0))
    out = np.zeros(features.shape[1])
    if not used.size:
        return out
    a = features[:, used]
    ridge = 1e-6 * np.eye(used.size)
    w = (np.linalg.solve(a.T @ a + ridge, a.T @ values) if start is None
         else np.asarray(start, np.float64)[used])
    for _ in range(iterations):
        inverse = 1.0 / np.maximum(np.abs(values - a @ w), 0.1)
        weighted = a * inverse[:, None]
        w = np.linalg.solve(weighted.T @ a + ridge, weighted.T @ values)
    out[used] = w
    return out


def _lad_weights(tiles: Sequence[Sequence[np.ndarray]], level: int) -> np.ndarray | None:
    """Mean weights (1/32, clipped to i8) minimising Σ|latent − mean| over one level of the tiles."""
    rows, targets = [], []
    for grids in tiles:
        if level >= len(grids) or not grids[level].any():
            continue
        grid = np.asarray(grids[level], np.int64)
        rows.append(level_mean_features(grid, coarser_level(grids, level)).reshape(MEAN_TERMS, -1).T)
        targets.append(grid.reshape(-1).astype(np.float64))
    if not rows:
        return None
    w = lad_fit(np.concatenate(rows).astype(np.float64), np.concatenate(targets))
    return np.clip(np.rint(MEAN_UNIT * w), -SLOPE_LIMIT, SLOPE_LIMIT).astype(np.int64)
