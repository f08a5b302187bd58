"""The encoder's loop filter (format 3, models 13 and 14): least-squares filters of the volume a reader
decodes, one shared by the file and one per tile, and each tile's choice by squared error and bits.

Why: the residual's quantised DCT blocks leave noise that a small linear filter removes (session 32,
offline on the table's files: +0.45 dB on the MRI at 0.1–0.25 BPV with a radius-3 filter per tile,
+0.1 dB on the CT and the light-sheet crop, where one shared filter pays better than one a tile).
Everything is decided on normal equations gathered once per tile: a filter's squared error is a
quadratic form of its weights, so every candidate is scored without filtering the volume again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from napari_sci.base.volume import ValueRange
from napari_sci.core.decoder import deblock
from napari_sci.io import residual as residual_coding
from napari_sci.io.format import EXACT_KINDS
from napari_sci.io.loop_filter import (
    MAX_RADIUS,
    NONE,
    SHARED,
    LoopFilter,
    choice_bytes,
    pair_offsets,
    record_bytes,
)
from napari_sci.io.residual import ResidualModel
from napari_sci.models import residual_blocks

FILTER_SLACK = 0.002  # the share of the budget the filters may leave unused before the residual is re-coded
ROWS_PER_CHUNK = 1 << 18  # voxels whose design rows are built at once (33 float64 columns: 69 MB)
# what the encoder sets aside for the filters before the residual is coded, beyond the shared radius and
# each tile's choice byte (in the file's overhead): a radius-2 shared filter
RESERVED_BYTES = record_bytes(2)


@dataclass(frozen=True)
class TileSystem:
    """A tile's normal equations for the largest filter: G = AᵀA, b = Aᵀt, tt = tᵀt, with A's columns the
    centre value, each pair's sum (radius 3, C order) and 1, all in normalised values."""

    gram: np.ndarray
    cross: np.ndarray
    target: float


@dataclass(frozen=True)
class FilterChoice:
    """Each latent tile's filter (``NONE``, ``SHARED`` or its own) and the shared one."""

    tiles: list[LoopFilter | int]
    shared: LoopFilter | None

    @property
    def extra_bytes(self) -> int:
        """Bytes beyond an unfiltered model 13/14 file (whose section holds the shared radius 0 and
        each tile one choice byte): the shared record and the tiles' own records."""
        return record_bytes(self.shared.radius if self.shared else 0) + sum(
            choice_bytes(c) - 1 for c in self.tiles)


def columns(radius: int) -> np.ndarray:
    """Indices, among the radius-3 system's columns, of a radius-``radius`` filter's."""
    full = [tuple(d) for d in pair_offsets(MAX_RADIUS)]
    pairs = [1 + full.index(tuple(d)) for d in pair_offsets(radius)]
    return np.array([0, *pairs, len(full) + 1])


def tile_system(padded: np.ndarray, region: Sequence[slice], target: np.ndarray) -> TileSystem:
    """The normal equations of one tile: ``padded`` is the normalised decoded volume with
    ``MAX_RADIUS`` voxels of edge padding, ``region`` the tile's box, ``target`` its normalised values."""
    offsets = pair_offsets(MAX_RADIUS)
    n = len(offsets) + 2
    gram, cross, tt = np.zeros((n, n)), np.zeros(n), 0.0
    size0 = region[0].stop - region[0].start
    plane = int(np.prod([s.stop - s.start for s in region[1:]]))
    rows = max(1, ROWS_PER_CHUNK // max(plane, 1))
    for z in range(0, size0, rows):
        part = (slice(region[0].start + z, min(region[0].stop, region[0].start + z + rows)), *region[1:])

        def shifted(d: Sequence[int], part: tuple[slice, ...] = part) -> np.ndarray:
            return padded[tuple(slice(s.start + MAX_RADIUS + v, s.stop + MAX_RADIUS + v)
                                for s, v in zip(part, d))].reshape(-1).astype(np.float64)

        design = np.empty((shifted((0, 0, 0)).size, n))
        design[:, 0] = shifted((0, 0, 0))
        for k, d in enumerate(offsets):
            design[:, 1 + k] = shifted(d) + shifted(-d)
        design[:, -1] = 1.0
        goal = target[tuple(slice(p.start - r.start, p.stop - r.start) for p, r in zip(part, region))]
        goal = goal.reshape(-1).astype(np.float64)
        gram += design.T @ design
        cross += design.T @ goal
        tt += float(goal @ goal)
    return TileSystem(gram, cross, tt)


def _error(system: TileSystem, cols: np.ndarray, weights: np.ndarray) -> float:
    """Squared error of the filter ``weights`` (on the columns ``cols``) over the tile."""
    g = system.gram[np.ix_(cols, cols)]
    return float(system.target - 2 * weights @ system.cross[cols] + weights @ g @ weights)


def _identity_error(system: TileSystem) -> float:
    return float(system.target - 2 * system.cross[0] + system.gram[0, 0])


def _solve(gram: np.ndarray, cross: np.ndarray, radius: int) -> LoopFilter:
    """The least-squares filter of a radius, stored (its taps rounded as the file holds them)."""
    cols = columns(radius)
    weights = np.linalg.lstsq(gram[np.ix_(cols, cols)], cross[cols], rcond=None)[0]
    return LoopFilter.from_weights(radius, weights[:-1], float(weights[-1]))


def _stored_weights(loop_filter: LoopFilter) -> np.ndarray:
    return np.append(loop_filter.taps, loop_filter.offset)


def filter_error(system: TileSystem, loop_filter: LoopFilter | None) -> float:
    """A tile's squared error (normalised values) under a stored filter, or unfiltered."""
    if loop_filter is None:
        return _identity_error(system)
    return _error(system, columns(loop_filter.radius), _stored_weights(loop_filter))


def choose_filters(systems: Sequence[TileSystem], lam: float) -> FilterChoice:
    """Each tile's filter and the shared one, minimising squared error + ``lam`` × bits (``lam``: the
    file's squared error per bit, the slope of its rate–distortion curve near its rate)."""
    own = [[_solve(s.gram, s.cross, r) for r in range(1, MAX_RADIUS + 1)] for s in systems]
    own_costs = [[filter_error(s, f) + lam * 8 * choice_bytes(f) for f in filters]
                 for s, filters in zip(systems, own)]
    none_costs = [_identity_error(s) + lam * 8 for s in systems]
    best: tuple[float, FilterChoice] | None = None
    gram, cross = sum(s.gram for s in systems), sum(s.cross for s in systems)
    for radius in range(0, MAX_RADIUS + 1):
        shared = _solve(gram, cross, radius) if radius else None
        for _ in range(2):  # fitted over every tile, then over the tiles that took it
            tiles: list[LoopFilter | int] = []
            total = lam * 8 * record_bytes(radius)
            for s, filters, costs, none in zip(systems, own, own_costs, none_costs):
                options: list[tuple[float, LoopFilter | int]] = [(none, NONE)]
                options += [(c, f) for c, f in zip(costs, filters)]
                if shared is not None:
                    options.append((filter_error(s, shared) + lam * 8, SHARED))
                cost, choice = min(options, key=lambda option: option[0])
                tiles.append(choice)
                total += cost
            users = [s for s, c in zip(systems, tiles) if c == SHARED]
            if shared is None or not users:
                break
            # refitted over its users: their summed error can only fall, so ``total`` stays an upper bound
            shared = _solve(sum(s.gram for s in users), sum(s.cross for s in users), radius)
        if shared is not None and SHARED not in tiles:
            continue  # no tile took it: the radius-0 candidate covers this choice
        if best is None or total < best[0]:
            best = (total, FilterChoice(tiles, shared))
    assert best is not None
    return best[1]


def refit(systems: Sequence[TileSystem], choice: FilterChoice) -> FilterChoice:
    """The same choices (so the same bytes) with their filters fitted again on new systems (after the
    residual was coded again in the room the filters left)."""
    users = [s for s, c in zip(systems, choice.tiles) if c == SHARED]
    shared = choice.shared
    if shared is not None and users:
        shared = _solve(sum(s.gram for s in users), sum(s.cross for s in users), shared.radius)
    tiles: list[LoopFilter | int] = [
        _solve(s.gram, s.cross, c.radius) if isinstance(c, LoopFilter) else c
        for s, c in zip(systems, choice.tiles)]
    return FilterChoice(tiles, shared)


def systems_of(decoded: np.ndarray, original: np.ndarray, regions: Sequence[tuple[slice, ...]],
               ) -> list[TileSystem]:
    """Each region's (latent tile's) normal equations: ``decoded`` is the normalised volume a reader
    gets before the filter, ``original`` the normalised volume."""
    padded = np.pad(np.asarray(decoded, np.float32), MAX_RADIUS, mode="edge")
    return [tile_system(padded, region, original[region]) for region in regions]


class FilterTarget:
    """What the loop filters are fitted on: the volume a reader decodes before them (synthesis output,
    residual, deblocking) against the normalised original. ``regions`` are every block's slices,
    ``records`` their block records, ``tiles`` the latent tiles' indices with their synthesis output
    ``decoded`` (normalised) and level-1 latents."""

    def __init__(self, normalised: np.ndarray, data: ValueRange, regions: Sequence[tuple[slice, ...]],
                 records: np.ndarray, tiles: Sequence[int], decoded: Sequence[np.ndarray],
                 level1: Sequence[np.ndarray | None]) -> None:
        self.normalised, self.regions, self.records, self.tiles = normalised, regions, records, tiles
        self.decoded, self.level1 = decoded, level1
        self.low, self.span = np.float32(data.low), np.float32(data.span if data.span > 0 else 1.0)
        self.error = 0.0

    def systems(self, model: ResidualModel, streams: Sequence[bytes]) -> list[TileSystem]:
        """The latent tiles' normal equations with this residual coded (a reader's decoding of it)."""
        values = {}
        for index, base, l1, stream in zip(self.tiles, self.decoded, self.level1, streams):
            y = np.asarray(base, np.float32)
            if stream:
                layout = residual_coding.tile_layout(y.shape, l1, model.block)
                y = y + residual_blocks.reconstruct(layout, residual_coding.decode(stream, layout, model),
                                                    model.step)
            values[index] = self.low + y * self.span
        volume = reader_volume(self.normalised.shape, self.regions, self.records["lo"], values,
                               np.isin(self.records["kind"], EXACT_KINDS))
        volume = (volume - self.low) / self.span
        self.error = float(np.sum((volume.astype(np.float64) - self.normalised) ** 2))
        return systems_of(volume, self.normalised, [self.regions[i] for i in self.tiles])

    def lam(self, target_bytes: int) -> float:
        """The file's squared error per bit (normalised values) after :meth:`systems`: the slope of a
        curve that gains about 3 dB an octave of rate near its rate (the table's files: 2.5–4)."""
        return self.error / max(8.0 * target_bytes, 1.0)


def reader_volume(shape: Sequence[int], regions: Sequence[tuple[slice, ...]], constants: np.ndarray,
                  tile_values: dict[int, np.ndarray], exact: np.ndarray) -> np.ndarray:
    """The deblocked float32 volume (data units) a reader computes before the loop filter: block ``i``
    is ``constants[i]`` unless ``tile_values`` holds its values; ``exact`` marks the blocks the
    deblocking leaves alone."""
    values = np.empty(tuple(shape), np.float32)
    labels = np.empty(tuple(shape), np.int32)
    for index, region in enumerate(regions):
        values[region] = tile_values[index] if index in tile_values else np.float32(constants[index])
        labels[region] = index
    return deblock(values, labels, exact)


ResidualCoder = Callable[[int, Sequence[Sequence[int]]], tuple[ResidualModel, list[bytes]]]


def residual_with_filters(code: ResidualCoder, room: int, shapes: Sequence[Sequence[int]],
                          target: FilterTarget, file_bytes: int,
                          stopped: Callable[[], bool] = lambda: False,
                          ) -> tuple[ResidualModel, list[bytes], FilterChoice | None]:
    """The residual coded beside loop filters in ``room`` bytes: ``code(room, shapes)`` codes it with
    the best of the block shapes; the filters are fitted to the volume it leaves, and when their
    bytes differ from what was set aside (by more than ``FILTER_SLACK`` of the file's
    ``file_bytes``, or at all if more), the residual is coded again in the right room, with the shape
    kept, and the same choices refitted. ``None`` for the filters if stopped before them."""
    model, streams = code(room - RESERVED_BYTES, shapes)
    if stopped():
        return model, streams, None
    choice = choose_filters(target.systems(model, streams), target.lam(file_bytes))
    extra = choice.extra_bytes
    if extra > RESERVED_BYTES or RESERVED_BYTES - extra > FILTER_SLACK * file_bytes:
        model, streams = code(room - extra, (model.block,) if any(streams) else shapes)
        if stopped():
            return model, streams, None
        choice = refit(target.systems(model, streams), choice)
    return model, streams, choice
