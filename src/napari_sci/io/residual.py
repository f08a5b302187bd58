"""The residual layer of format 3's models 7 to 12: DCT blocks of integer coefficients per tile (8³, or
the shape models 11 and 12 state).

A latent fit's rate–distortion curve flattens above ~0.1 BPV; a block transform codes what the latents
leave at a far steeper slope (docs/benchmarks.md §7, session 26). Spec: docs/format.md "Models 7 and 8"
(coding 1: every coefficient of a coded block is a symbol), "Models 9 and 10" (coding 2: a flag per
block and band, only significant bands' coefficients coded, scaled by their lower-frequency neighbours)
and "Models 11 and 12" (coding 3: coding 2 with the block shape in the model section).
Contexts come from integers only (the tile's level-1 latents, the coefficient's position), so encoder
and decoder agree on every machine. This module codes the integer coefficients; the transform itself
(a float DCT) is ``models/residual_blocks``.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from napari_sci.base.grid_geometry import RESIDUAL_BLOCK_VOXELS, residual_block_ok
from napari_sci.errors import SciFormatError
from napari_sci.io.laplace_codes import LATENT_LIMIT, SCALE_CODE_ZERO, SCALES, laplace_bits_each

BLOCK = 8
BANDS = 12
ACTIVITY_THRESHOLDS = (1, 4, 16, 64, 256)
BINS = len(ACTIVITY_THRESHOLDS) + 1
CLASSES = BINS * BANDS
BAND_CONTEXTS = BINS * BANDS * 2  # codings 2 and 3: (bin, band, previous band significant)
NEIGHBOURHOODS = 4                 # codings 2 and 3: min(3, Σ |lower-frequency neighbours|)
CODING_CLASSES = {1: CLASSES, 2: CLASSES * NEIGHBOURHOODS, 3: CLASSES * NEIGHBOURHOODS}
WRITTEN_CODING = 3  # what the encoder writes (models 11 and 12); codings 1 and 2 (models 7–10) are read
STEP_RANGE = (2.0 ** -24, 1.0)
_STEP = struct.Struct("<f")
SECTION_BYTES = {1: _STEP.size + BINS + CLASSES,
                 2: _STEP.size + BINS + BAND_CONTEXTS + CLASSES * NEIGHBOURHOODS,
                 3: _STEP.size + 3 + BINS + BAND_CONTEXTS + CLASSES * NEIGHBOURHOODS}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class ResidualModel:
    """The residual's part of the model section: coefficient step, flag and class codes, for codings
    2 and 3 (models 9 to 12) the band codes, and for coding 3 the block shape."""

    step: float
    flag_codes: tuple[int, ...]   # per activity bin: 0 = no coded block, else P(coded) = code/256
    class_codes: tuple[int, ...]  # per class: 0 = all zero, else a Laplace scale code
    band_codes: tuple[int, ...] = ()  # codings 2 and 3, per band context: 0 = never significant, else P·256
    coding: int = 1
    block: tuple[int, ...] = (BLOCK, BLOCK, BLOCK)  # coding 3 states it; 8³ before

    def pack(self) -> bytes:
        shape = bytes(int(m).bit_length() - 1 for m in self.block) if self.coding == 3 else b""
        return (_STEP.pack(self.step) + shape + bytes(self.flag_codes) + bytes(self.band_codes)
                + bytes(self.class_codes))

    @classmethod
    def unpack(cls, data: bytes, coding: int = 1) -> ResidualModel:
        if len(data) != SECTION_BYTES[coding]:
            raise SciFormatError(f"residual model of {len(data)} bytes, {SECTION_BYTES[coding]} expected")
        (step,) = _STEP.unpack_from(data, 0)
        if not (math.isfinite(step) and STEP_RANGE[0] <= step <= STEP_RANGE[1]):
            raise SciFormatError(f"residual step {step} is outside [2^-24, 1]")
        at = _STEP.size
        block = (BLOCK, BLOCK, BLOCK)
        if coding == 3:
            block = _block_shape(data[at:at + 3])
            at += 3
        flags = tuple(data[at:at + BINS])
        at += BINS
        bands = tuple(data[at:at + BAND_CONTEXTS]) if coding >= 2 else ()
        return cls(float(step), flags, tuple(data[at + len(bands):]), bands, coding, block)

    @classmethod
    def empty(cls, coding: int = WRITTEN_CODING,
              block: Sequence[int] = (BLOCK, BLOCK, BLOCK)) -> ResidualModel:
        return cls(1.0, (0,) * BINS, (0,) * CODING_CLASSES[coding],
                   (0,) * BAND_CONTEXTS if coding >= 2 else (), coding, tuple(int(m) for m in block))


def _block_shape(data: bytes) -> tuple[int, ...]:
    """Coding 3: the block shape from its three log2 bytes, refused out of range."""
    block = tuple(1 << e if e < 16 else 0 for e in data)
    if not residual_block_ok(block):
        raise SciFormatError(f"residual block shape log2 {tuple(data)}: each axis must be 2–32 voxels "
                             f"and the block {RESIDUAL_BLOCK_VOXELS[0]}–{RESIDUAL_BLOCK_VOXELS[1]} voxels")
    return block


def block_cuts(size: int, block: int = BLOCK) -> list[tuple[int, int]]:
    """(start, stop) of the blocks along an axis of ``size`` voxels, ``block`` voxels each."""
    return [(start, min(start + block, size)) for start in range(0, size, block)]


def _block_of(tile_shape: Sequence[int], block: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(int(m) for m in block) if block is not None else (BLOCK,) * len(tile_shape)


@functools.lru_cache(maxsize=64)
def _band(shape: tuple[int, ...]) -> np.ndarray:
    return band_of(shape)


def band_of(shape: Sequence[int]) -> np.ndarray:
    """Band of each coefficient of a block of ``shape``: min(Σ ⌊8·k_a/m_a⌋, 11)."""
    total = np.zeros(tuple(shape), np.int64)
    for axis, m in enumerate(shape):
        k = (BLOCK * np.arange(m)) // m
        total = total + k.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return np.minimum(total, BANDS - 1)


def activity_bins(tile_shape: Sequence[int], level1: np.ndarray | None,
                  block: Sequence[int] | None = None) -> np.ndarray:
    """Activity bin of every block of a tile (indexed by block) from its level-1 latents: the number
    of thresholds the sum of |q| over the block's level-1 samples reaches (per 8³ voxels: a block of
    ``m`` voxels an axis holds m/2 samples an axis)."""
    block = _block_of(tile_shape, block)
    counts = tuple(len(block_cuts(s, m)) for s, m in zip(tile_shape, block))
    if level1 is None:
        return np.zeros(counts, np.int64)
    total = np.abs(np.asarray(level1, np.int64))
    for axis in range(total.ndim):  # level 1 has ⌈s/2⌉ samples an axis: ⌈s/m⌉ groups of (up to) m/2
        total = np.add.reduceat(total, np.arange(0, total.shape[axis], max(1, block[axis] // 2)), axis=axis)
    if total.shape != counts:
        raise SciFormatError(f"level-1 latents of shape {np.shape(level1)} do not match a tile of "
                             f"{tuple(tile_shape)}")
    # 512·A ≥ t·(m₀m₁m₂): the thresholds are per 8³ voxels (model 9's bins for 8³ blocks)
    scaled = np.array(ACTIVITY_THRESHOLDS, np.int64) * math.prod(block)
    return np.searchsorted(scaled, BLOCK ** 3 * total, side="right").astype(np.int64)


def block_slices(tile_shape: Sequence[int], block: Sequence[int] | None = None) -> list[tuple[slice, ...]]:
    """Every block's slices, C order of the block indices."""
    cuts = [block_cuts(s, m) for s, m in zip(tile_shape, _block_of(tile_shape, block))]
    return [tuple(slice(*cuts[a][i]) for a, i in enumerate(index))
            for index in np.ndindex(*(len(c) for c in cuts))]


@dataclass(frozen=True)
class ShapeTable:
    """What a block of one shape needs, per band: its coefficients' positions within the block (C
    order) and their lower-band neighbours (positions, −1: none). A tile's blocks have at most 2^ndim
    shapes, so a band's coefficients are a gather of these on the blocks asked for."""

    positions: tuple[np.ndarray, ...]  # per band, ascending
    lower: tuple[np.ndarray, ...]      # per band, (coefficients of the band, 3)
    has_band: np.ndarray               # (bands,) whether the shape has a coefficient in the band

    @functools.cached_property
    def own_lower(self) -> tuple[np.ndarray, ...]:
        """``lower`` with a missing neighbour replaced by the coefficient's own position (read while
        its band is still undecoded: 0), axis first (3, coefficients of the band)."""
        return tuple(np.where(near >= 0, near, p[:, None]).T.copy()
                     for p, near in zip(self.positions, self.lower))


@functools.lru_cache(maxsize=64)
def shape_table(shape: tuple[int, ...]) -> ShapeTable:
    """The per-band tables of a block of ``shape``, built once a process."""
    band = band_of(shape).reshape(-1)
    lower = _lower(shape)
    positions = tuple(np.flatnonzero(band == b) for b in range(BANDS))
    return ShapeTable(positions, tuple(lower[p] for p in positions),
                      np.array([p.size > 0 for p in positions]))


@dataclass(frozen=True)
class TileLayout:
    """Where a tile's coefficients sit in coding order (blocks in C order, each block's coefficients in
    C order) and each block's activity bin: fixed for a tile, whatever the step, so the encoder's
    bisection and the decoder work on flat arrays. The per-coefficient tables (classes, bands, owning
    block) are built only when asked for (the encoder's rate–distortion decisions); decoding works a
    block shape at a time."""

    shape: tuple[int, ...]
    block: tuple[int, ...]  # the full blocks' shape (those at a tile's end are cut)
    starts: np.ndarray   # (blocks + 1,) offsets of each block's coefficients
    bins: np.ndarray     # (blocks,) activity bin
    shapes: tuple[tuple[int, ...], ...]  # the blocks' distinct shapes
    which: np.ndarray    # (blocks,) each block's index into ``shapes``

    @property
    def count(self) -> int:
        """The number of blocks."""
        return self.starts.size - 1

    @property
    def size(self) -> int:
        """The number of coefficients (the tile's voxels)."""
        return int(self.starts[-1])

    @functools.cached_property
    def block_of(self) -> np.ndarray:
        """(coefficients,) the block each belongs to."""
        return np.repeat(np.arange(self.count, dtype=np.int32), np.diff(self.starts))

    @functools.cached_property
    def classes(self) -> np.ndarray:
        """(coefficients,) each coefficient's class, 12·bin + band."""
        classes = np.zeros(self.size, np.int16)
        for index, shape in enumerate(self.shapes):
            members = np.flatnonzero(self.which == index)
            positions = self.starts[members][:, None] + np.arange(math.prod(shape))
            classes[positions] = BANDS * self.bins[members][:, None] + _band(shape).reshape(-1)
        return classes

    @functools.cached_property
    def bands(self) -> np.ndarray:
        """(coefficients,) each coefficient's band (its class modulo 12), computed once a tile."""
        return self.classes % BANDS

    @functools.cached_property
    def tables(self) -> list[ShapeTable]:
        """Each of ``shapes``' per-band tables."""
        return [shape_table(s) for s in self.shapes]

    @functools.cached_property
    def has_band(self) -> np.ndarray:
        """Codings 2 and 3: (blocks, bands) whether the block has a coefficient in the band."""
        if not self.shapes:
            return np.zeros((0, BANDS), bool)
        return np.stack([t.has_band for t in self.tables])[self.which]

    @functools.cached_property
    def shape_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Codings 2 and 3: each block's shape index (blocks,) and, per shape, each coefficient's lower-band
        neighbours within its block (shapes, block voxels, 3; −1: none), so a neighbourhood is a gather on the
        coefficients asked for, never a table over the whole tile."""
        tables = np.full((max(1, len(self.shapes)), math.prod(self.block), 3), -1, np.int16)
        for index, block_shape in enumerate(self.shapes):
            local = _lower(block_shape)
            tables[index, :local.shape[0]] = local
        return self.which, tables

    def band_classes(self, band: int, blocks: np.ndarray, decoded: np.ndarray,
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Codings 2 and 3: the coefficients of ``band`` in the ``blocks`` given (ascending), in coding
        order — their positions and their classes, 4·(12·bin + band) + neighbourhood, the neighbourhood
        read from ``decoded``, which holds the lower bands' |q| and zeros in this band and above (a
        missing neighbour reads the coefficient itself: 0) — a gather per block shape, no table over
        the whole tile."""
        which = self.which[blocks]
        tables = self.tables
        per_shape = np.array([t.positions[band].size for t in tables], np.int64)
        offsets = np.concatenate(([0], np.cumsum(per_shape[which]))) if tables else np.zeros(1, np.int64)
        positions = np.empty(int(offsets[-1]), np.int64)
        classes = np.empty(positions.size, np.int64)
        for index, table in enumerate(tables):
            chosen = np.flatnonzero(which == index) if len(tables) > 1 else np.arange(blocks.size)
            if not (per_shape[index] and chosen.size):
                continue
            first = self.starts[blocks[chosen]][:, None]
            at = offsets[chosen][:, None] + np.arange(per_shape[index])
            positions[at] = first + table.positions[band]
            lower = table.own_lower[band]
            near = decoded[first + lower[0]] + decoded[first + lower[1]] + decoded[first + lower[2]]
            own = NEIGHBOURHOODS * (BANDS * self.bins[blocks[chosen]][:, None] + band)
            classes[at] = own + np.minimum(near, NEIGHBOURHOODS - 1)
        return positions, classes


@functools.lru_cache(maxsize=64)
def _lower(shape: tuple[int, ...]) -> np.ndarray:
    """(coefficients, 3): within a block of ``shape`` (C order), each coefficient's neighbour k − e_a
    when it lies in a lower band, else −1."""
    band = band_of(shape).reshape(-1)
    positions = np.indices(shape).reshape(len(shape), -1)
    out = np.full((band.size, 3), -1, np.int64)
    for axis in range(len(shape)):
        neighbour = np.arange(band.size) - math.prod(shape[axis + 1:])
        ok = positions[axis] >= 1
        ok[ok] = band[neighbour[ok]] < band[ok]
        out[ok, axis] = neighbour[ok]
    return out


def _block_extents(tile_shape: tuple[int, ...], block: tuple[int, ...]) -> np.ndarray:
    """(blocks, ndim): each block's size along each axis, blocks in C order."""
    per_axis = [np.diff([start for start, _ in block_cuts(s, m)] + [s]) for s, m in zip(tile_shape, block)]
    grids = np.meshgrid(*per_axis, indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=1) if per_axis else np.zeros((1, 0), np.int64)


def tile_layout(tile_shape: Sequence[int], level1: np.ndarray | None,
                block: Sequence[int] | None = None) -> TileLayout:
    """The coding order and bins of a tile of ``tile_shape`` with these level-1 latents, cut into
    blocks of ``block`` (default 8 an axis)."""
    shape = tuple(int(s) for s in tile_shape)
    block = _block_of(shape, block)
    bins = activity_bins(shape, level1, block).reshape(-1)
    extents = _block_extents(shape, block)
    if not bins.size:
        return TileLayout(shape, block, np.zeros(1, np.int64), bins, (), np.zeros(0, np.int8))
    starts = np.concatenate(([0], np.cumsum(np.prod(extents, axis=1)))).astype(np.int64)
    # at most 2^ndim shapes (full blocks and the cut ones at the tile's ends)
    shapes, which = np.unique(extents, axis=0, return_inverse=True)
    return TileLayout(shape, block, starts, bins, tuple(tuple(int(v) for v in e) for e in shapes),
                      which.reshape(-1).astype(np.int8))


def quantise(coefficients: np.ndarray, step: float, offset: float = 0.33) -> np.ndarray:
    """Dead-zone quantisation: sign · ⌊|X|/step + offset⌋, clipped to the symbol range."""
    return np.clip(np.sign(coefficients) * np.floor(np.abs(coefficients) / step + offset),
                   -LATENT_LIMIT, LATENT_LIMIT).astype(np.int32)


def _coded_blocks(layout: TileLayout, q: np.ndarray) -> np.ndarray:
    """Blocks holding a non-zero coefficient."""
    if not layout.count:
        return np.zeros(0, bool)
    return np.add.reduceat((q != 0).astype(np.int64), layout.starts[:-1]) > 0


def _probability_code(zero: int, one: int) -> int:
    """A flag's code: 0 when it is never 1 (then it is not coded), else P(1)·256 in [1, 255]."""
    return 0 if one == 0 else int(np.clip(round(256 * one / (zero + one)), 1, 255))


def significance(layout: TileLayout, q: np.ndarray) -> np.ndarray:
    """(blocks, bands): whether the band of the block holds a non-zero coefficient."""
    out = np.zeros((layout.count, BANDS), bool)
    nonzero = q != 0
    out[layout.block_of[nonzero], layout.bands[nonzero]] = True
    return out


def _band_context(bins: np.ndarray, band: int | np.ndarray, below: np.ndarray) -> np.ndarray:
    """Codings 2 and 3: a band flag's probability context, 2·(12·bin + band) + "band below significant"."""
    return 2 * (BANDS * bins + band) + below


def _coefficient_class(layout: TileLayout, q: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Codings 2 and 3: the class of the coefficients at ``members``, 4·(12·bin + band) + neighbourhood, the
    neighbourhood read from ``q``."""
    return NEIGHBOURHOODS * layout.classes[members].astype(np.int64) + _neighbourhood(layout, q, members)


def _neighbourhood(layout: TileLayout, q: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Codings 2 and 3: min(3, Σ |q| of the lower-band neighbours) of the coefficients at ``members``."""
    which, tables = layout.shape_tables
    block = layout.block_of[members]
    first = layout.starts[block]
    local = tables[which[block], members - first]
    total = np.where(local >= 0, np.abs(q[np.maximum(local, 0) + first[:, None]]), 0).sum(axis=1)
    return np.minimum(total, NEIGHBOURHOODS - 1)


def best_codes(tiles: Sequence[tuple[TileLayout, np.ndarray]], step: float,
               coding: int = WRITTEN_CODING) -> ResidualModel:
    """Flag, band and class codes minimising the ideal code length of these tiles' coefficients (each
    tile: its layout and its integer coefficients in coding order)."""
    flags = np.zeros((BINS, 2), np.int64)
    bands = np.zeros((BAND_CONTEXTS, 2), np.int64)
    keys = []
    for layout, q in tiles:
        coded = _coded_blocks(layout, q)
        flags += np.stack((np.bincount(layout.bins[~coded], minlength=BINS),
                           np.bincount(layout.bins[coded], minlength=BINS)), axis=1)
        if coding == 1:
            inside = np.flatnonzero(coded[layout.block_of])
            classes = layout.classes[inside].astype(np.int64)
        else:
            significant = significance(layout, q)
            previous = np.ones(layout.count, bool)
            for band in range(BANDS):
                context = _band_context(layout.bins, band, previous)
                asked = coded & layout.has_band[:, band]
                np.add.at(bands, (context[asked], significant[asked, band].astype(np.int64)), 1)
                previous = significant[:, band]
            inside = np.flatnonzero(significant[layout.block_of, layout.bands])
            classes = _coefficient_class(layout, q, inside)
        keys.append(classes * (LATENT_LIMIT + 1) + np.abs(q[inside]))
    flag_codes = tuple(_probability_code(zero, one) for zero, one in flags)
    band_codes = tuple(_probability_code(zero, one) for zero, one in bands) if coding >= 2 else ()
    pairs, counts = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    classes, magnitudes = np.divmod(pairs, LATENT_LIMIT + 1)
    class_codes = [SCALE_CODE_ZERO] * CODING_CLASSES[coding]
    for c in np.unique(classes):
        member = classes == c
        m, n = magnitudes[member], counts[member]
        if not m.any():
            continue
        # every code: a window around the mean's code (session 26) missed the best scale of the
        # sparse high bands (a few ±1 among zeros), 9 % of the MRI's residual bits at 0.25 BPV
        bits = n @ laplace_bits_each(m[:, None], SCALES[None, 1:])
        class_codes[int(c)] = 1 + int(np.argmin(bits))
    block = tiles[0][0].block if tiles else (BLOCK, BLOCK, BLOCK)
    return ResidualModel(step, flag_codes, tuple(class_codes), band_codes, coding, block)


def coefficient_bits(layout: TileLayout, q: np.ndarray, model: ResidualModel, members: np.ndarray,
                     magnitudes: np.ndarray) -> np.ndarray:
    """Codings 2 and 3: the bits the coefficients at ``members`` would take at each of ``magnitudes``
    (members × candidates) under ``model``'s class codes, their classes read from ``q``'s
    neighbourhoods. A class that is not coded costs nothing for a zero and 10⁹ bits otherwise. For
    the encoder's rate–distortion decisions."""
    codes = np.array(model.class_codes, np.int64)[_coefficient_class(layout, q, members)][:, None]
    bits = laplace_bits_each(magnitudes, SCALES[codes])
    return np.where(codes > 0, bits, np.where(magnitudes == 0, 0.0, 1e9))


def band_flag_bits(layout: TileLayout, significant: np.ndarray, model: ResidualModel) -> np.ndarray:
    """Codings 2 and 3: (blocks, bands, 2) the bits of each band's significance flag being 0 and 1 under
    ``model``, the context's "band below significant" read from ``significant`` (blocks × bands, as
    :func:`significance` gives; 10⁹ for a flag the code rules out). For the encoder's rate–distortion
    decisions."""
    below = np.concatenate([np.ones((layout.count, 1), bool), significant[:, :-1]], axis=1)
    context = _band_context(layout.bins[:, None], np.arange(BANDS)[None, :], below)
    p = np.array(model.band_codes, np.float64)[context] / 256.0
    with np.errstate(divide="ignore"):
        return np.stack((np.where(p < 1, -np.log2(1 - p), 1e9), np.where(p > 0, -np.log2(p), 1e9)),
                        axis=-1)


def band_sums(layout: TileLayout, values: np.ndarray) -> np.ndarray:
    """(blocks, bands): ``values`` (one per coefficient) summed over each block's band."""
    out = np.zeros((layout.count, BANDS))
    np.add.at(out, (layout.block_of, layout.bands), values)
    return out


def _categorical():  # type: ignore[no-untyped-def]
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def _laplace():  # type: ignore[no-untyped-def]
    import constriction

    return constriction.stream.model.QuantizedLaplace(-LATENT_LIMIT, LATENT_LIMIT)


def _flag_probabilities(codes: np.ndarray) -> np.ndarray:
    p = codes.astype(np.float64) / 256.0
    return np.stack((1.0 - p, p), axis=1)


def _flag_order(layout: TileLayout, flag_codes: np.ndarray) -> np.ndarray:
    """The blocks whose flag is coded, in decoding order (bins 0 to 5, blocks in C order)."""
    order = np.argsort(layout.bins, kind="stable")
    return order[flag_codes[layout.bins[order]] > 0]


def encode(layout: TileLayout, q: np.ndarray, model: ResidualModel) -> bytes:
    """A tile's residual stream (u32 words) from its integer coefficients (coding order).

    A coefficient in a class whose code is 0, or in a block of a bin whose flag code is 0 (codings 2 and 3:
    or in a band whose context code is 0), cannot be coded and is dropped (codes chosen on the same
    coefficients never do that)."""
    import constriction

    flag_codes = np.array(model.flag_codes, np.int64)
    coded = _coded_blocks(layout, q) & (flag_codes[layout.bins] > 0)
    coder = constriction.stream.stack.AnsCoder()
    if model.coding == 1:
        class_codes = np.array(model.class_codes, np.int16)
        codes = class_codes[layout.classes]
        keep = coded[layout.block_of] & (codes > 0)
        parts = [(q[keep], codes[keep], False)]
    else:
        parts = _band_parts(layout, model, coded, q)[0]
    for symbols, codes, is_flag in reversed(parts):  # a stack: the last part decoded is pushed first
        if symbols.size:
            if is_flag:
                coder.encode_reverse(symbols.astype(np.int32), _categorical(), _flag_probabilities(codes))
            else:
                coder.encode_reverse(symbols.astype(np.int32), _laplace(), np.zeros(symbols.size),
                                     SCALES[codes])
    flagged = _flag_order(layout, flag_codes)
    if flagged.size:
        coder.encode_reverse(coded[flagged].astype(np.int32), _categorical(),
                             _flag_probabilities(flag_codes[layout.bins[flagged]]))
    return coder.get_compressed().astype("<u4").tobytes()


def _band_parts(layout: TileLayout, model: ResidualModel, coded: np.ndarray, q: np.ndarray | None,
                decode: Callable[[np.ndarray, bool], np.ndarray] | None = None,
                ) -> tuple[list[tuple[np.ndarray, np.ndarray, bool]], np.ndarray]:
    """Codings 2 and 3, band after band: the significance flags and the coefficients in decoding order, as
    (symbols, codes, is_flag) parts, and the coefficients they give. Encoding, ``q`` holds the
    coefficients; decoding, ``decode`` pops the symbols of (codes, is_flag), the coefficients filled
    in as they come (the neighbourhood of band ``b`` reads the bands below it only)."""
    band_codes = np.array(model.band_codes, np.int64)
    class_codes = np.array(model.class_codes, np.int16)
    out = np.zeros(layout.size, np.int32)  # what a decoder holds so far
    magnitudes = np.zeros(layout.size, np.int32)  # and their |q|, which the neighbourhoods read
    given = significance(layout, q) if q is not None else None
    has_band = layout.has_band
    previous = np.ones(layout.count, bool)
    parts: list[tuple[np.ndarray, np.ndarray, bool]] = []
    for band in range(BANDS):
        context = _band_context(layout.bins, band, previous)
        asked = np.flatnonzero(coded & has_band[:, band] & (band_codes[context] > 0))
        flag_codes = band_codes[context[asked]]
        if given is not None:
            flags = given[asked, band].astype(np.int32)
        else:
            flags = decode(flag_codes, True) if asked.size else np.zeros(0, np.int32)
        parts.append((flags, flag_codes, True))
        significant = np.zeros(layout.count, bool)
        significant[asked] = flags == 1
        members, classes = layout.band_classes(band, np.flatnonzero(significant), magnitudes)
        codes = class_codes[classes]
        coded_here = codes > 0
        if not coded_here.all():
            members, codes = members[coded_here], codes[coded_here]
        if q is not None:
            symbols = q[members]
        else:
            symbols = decode(codes, False) if members.size else np.zeros(0, np.int32)
        out[members] = symbols
        magnitudes[members] = np.abs(symbols)
        parts.append((symbols, codes, False))
        previous = significant
    return parts, out


def decode(data: bytes, layout: TileLayout, model: ResidualModel) -> np.ndarray:
    """A tile's integer coefficients (coding order) from its residual stream; malformed:
    ``SciFormatError``."""
    import constriction

    if len(data) % 4:
        raise SciFormatError(f"residual stream of {len(data)} bytes is not whole u32 words")
    flag_codes = np.array(model.flag_codes, np.int64)
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        coded = np.zeros(layout.count, bool)
        flagged = _flag_order(layout, flag_codes)
        if flagged.size:
            coded[flagged] = coder.decode(_categorical(),
                                          _flag_probabilities(flag_codes[layout.bins[flagged]])) == 1
        if model.coding >= 2:
            def pop(codes: np.ndarray, is_flag: bool) -> np.ndarray:
                if is_flag:
                    symbols = coder.decode(_categorical(), _flag_probabilities(codes))
                else:
                    symbols = coder.decode(_laplace(), np.zeros(codes.size), SCALES[codes])
                return symbols.astype(np.int32, copy=False)

            return _band_parts(layout, model, coded, None, decode=pop)[1]
        q = np.zeros(layout.size, np.int32)
        codes = np.array(model.class_codes, np.int16)[layout.classes]
        keep = coded[layout.block_of] & (codes > 0)
        if keep.any():
            q[keep] = coder.decode(_laplace(), np.zeros(int(keep.sum())), SCALES[codes[keep]])
    except (ValueError, RuntimeError, OverflowError) as error:
        raise SciFormatError(f"residual stream cannot be decoded: {error}") from error
    return q


def split_payload(payload: bytes) -> tuple[bytes, bytes]:
    """A model 7/8 tile payload → (its model 3 latent payload, its residual stream)."""
    if len(payload) < _LENGTH.size:
        raise SciFormatError(f"residual tile payload of {len(payload)} bytes has no latent length")
    (length,) = _LENGTH.unpack_from(payload, 0)
    if length > len(payload) - _LENGTH.size:
        raise SciFormatError(f"latent length {length} runs past the tile payload ({len(payload)} bytes)")
    return payload[_LENGTH.size:_LENGTH.size + length], payload[_LENGTH.size + length:]


def join_payload(latents: bytes, residual: bytes) -> bytes:
    return _LENGTH.pack(len(latents)) + latents + residual
