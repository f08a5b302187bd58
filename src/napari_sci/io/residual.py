"""The residual layer of format 3's models 7 and 8: 8³ DCT blocks of integer coefficients per tile.

A latent fit's rate–distortion curve flattens above ~0.1 BPV; a block transform codes what the latents
leave at a far steeper slope (docs/benchmarks.md §7, session 26). Spec: docs/format.md "Models 7 and 8".
Contexts come from integers only (the tile's level-1 latents, the coefficient's position), so encoder
and decoder agree on every machine. This module codes the integer coefficients; the transform itself
(a float DCT) is ``models/residual_blocks``.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_sci.errors import SciFormatError
from napari_sci.io.laplace_codes import LATENT_LIMIT, SCALE_CODE_ZERO, SCALES, laplace_bits_each

BLOCK = 8
BANDS = 12
ACTIVITY_THRESHOLDS = (1, 4, 16, 64, 256)
BINS = len(ACTIVITY_THRESHOLDS) + 1
CLASSES = BINS * BANDS
STEP_RANGE = (2.0 ** -24, 1.0)
_STEP = struct.Struct("<f")
SECTION_BYTES = _STEP.size + BINS + CLASSES
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class ResidualModel:
    """The residual's part of the model section: coefficient step, flag and class codes."""

    step: float
    flag_codes: tuple[int, ...]   # per activity bin: 0 = no coded block, else P(coded) = code/256
    class_codes: tuple[int, ...]  # per class 12·bin + band: 0 = all zero, else a Laplace scale code

    def pack(self) -> bytes:
        return _STEP.pack(self.step) + bytes(self.flag_codes) + bytes(self.class_codes)

    @classmethod
    def unpack(cls, data: bytes) -> ResidualModel:
        if len(data) != SECTION_BYTES:
            raise SciFormatError(f"residual model of {len(data)} bytes, {SECTION_BYTES} expected")
        (step,) = _STEP.unpack_from(data, 0)
        if not (math.isfinite(step) and STEP_RANGE[0] <= step <= STEP_RANGE[1]):
            raise SciFormatError(f"residual step {step} is outside [2^-24, 1]")
        flags = tuple(data[_STEP.size:_STEP.size + BINS])
        return cls(float(step), flags, tuple(data[_STEP.size + BINS:]))

    @classmethod
    def empty(cls) -> ResidualModel:
        return cls(1.0, (0,) * BINS, (0,) * CLASSES)


def block_cuts(size: int) -> list[tuple[int, int]]:
    """(start, stop) of the blocks along an axis of ``size`` voxels."""
    return [(start, min(start + BLOCK, size)) for start in range(0, size, BLOCK)]


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


def activity_bins(tile_shape: Sequence[int], level1: np.ndarray | None) -> np.ndarray:
    """Activity bin of every block of a tile (indexed by block) from its level-1 latents: the number
    of thresholds the sum of |q| over the block's 4-per-axis level-1 samples reaches."""
    counts = tuple(len(block_cuts(s)) for s in tile_shape)
    if level1 is None:
        return np.zeros(counts, np.int64)
    total = np.abs(np.asarray(level1, np.int64))
    for axis in range(total.ndim):  # level 1 has ⌈s/2⌉ samples an axis: ⌈s/8⌉ groups of (up to) 4
        total = np.add.reduceat(total, np.arange(0, total.shape[axis], BLOCK // 2), axis=axis)
    if total.shape != counts:
        raise SciFormatError(f"level-1 latents of shape {np.shape(level1)} do not match a tile of "
                             f"{tuple(tile_shape)}")
    return np.searchsorted(np.array(ACTIVITY_THRESHOLDS), total, side="right").astype(np.int64)


def block_slices(tile_shape: Sequence[int]) -> list[tuple[slice, ...]]:
    """Every block's slices, C order of the block indices."""
    cuts = [block_cuts(s) for s in tile_shape]
    return [tuple(slice(*cuts[a][i]) for a, i in enumerate(index))
            for index in np.ndindex(*(len(c) for c in cuts))]


@dataclass(frozen=True)
class TileLayout:
    """Where a tile's coefficients sit in coding order (blocks in C order, each block's coefficients in
    C order), each coefficient's class and each block's activity bin: fixed for a tile, whatever the
    step, so the encoder's bisection and the decoder work on flat arrays."""

    shape: tuple[int, ...]
    blocks: list[tuple[slice, ...]]
    starts: np.ndarray   # (blocks + 1,) offsets of each block's coefficients
    bins: np.ndarray     # (blocks,) activity bin
    classes: np.ndarray  # (coefficients,) 12·bin + band
    block_of: np.ndarray  # (coefficients,) the block each belongs to


def tile_layout(tile_shape: Sequence[int], level1: np.ndarray | None) -> TileLayout:
    """The coding order, bins and classes of a tile of ``tile_shape`` with these level-1 latents."""
    shape = tuple(int(s) for s in tile_shape)
    blocks = block_slices(shape)
    bins = activity_bins(shape, level1).reshape(-1)
    sizes = [math.prod(sl.stop - sl.start for sl in b) for b in blocks]
    starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    classes = np.concatenate([BANDS * int(a) + _band(tuple(sl.stop - sl.start for sl in b)).reshape(-1)
                              for a, b in zip(bins, blocks)]) if blocks else np.zeros(0, np.int64)
    block_of = np.repeat(np.arange(len(blocks), dtype=np.int32), np.diff(starts))
    return TileLayout(shape, blocks, starts, bins, classes.astype(np.int16), block_of)  # up to 2^24 each


def quantise(coefficients: np.ndarray, step: float, offset: float = 0.33) -> np.ndarray:
    """Dead-zone quantisation: sign · ⌊|X|/step + offset⌋, clipped to the symbol range."""
    return np.clip(np.sign(coefficients) * np.floor(np.abs(coefficients) / step + offset),
                   -LATENT_LIMIT, LATENT_LIMIT).astype(np.int32)


def _coded_blocks(layout: TileLayout, q: np.ndarray) -> np.ndarray:
    """Blocks holding a non-zero coefficient."""
    if not layout.blocks:
        return np.zeros(0, bool)
    return np.add.reduceat((q != 0).astype(np.int64), layout.starts[:-1]) > 0


def best_codes(tiles: Sequence[tuple[TileLayout, np.ndarray]], step: float) -> ResidualModel:
    """Flag and class codes minimising the ideal code length of these tiles' coefficients (each tile:
    its layout and its integer coefficients in coding order)."""
    flags = np.zeros((BINS, 2), np.int64)
    keys = []
    for layout, q in tiles:
        coded = _coded_blocks(layout, q)
        flags += np.stack((np.bincount(layout.bins[~coded], minlength=BINS),
                           np.bincount(layout.bins[coded], minlength=BINS)), axis=1)
        inside = coded[layout.block_of]
        keys.append(layout.classes[inside].astype(np.int64) * (LATENT_LIMIT + 1) + np.abs(q[inside]))
    flag_codes = tuple(0 if one == 0 else int(np.clip(round(256 * one / (zero + one)), 1, 255))
                       for zero, one in flags)
    pairs, counts = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    classes, magnitudes = np.divmod(pairs, LATENT_LIMIT + 1)
    class_codes = [SCALE_CODE_ZERO] * CLASSES
    for c in np.unique(classes):
        member = classes == c
        m, n = magnitudes[member], counts[member]
        if not m.any():
            continue
        # every code: a window around the mean's code (session 26) missed the best scale of the
        # sparse high bands (a few ±1 among zeros), 9 % of the MRI's residual bits at 0.25 BPV
        bits = n @ laplace_bits_each(m[:, None], SCALES[None, 1:])
        class_codes[int(c)] = 1 + int(np.argmin(bits))
    return ResidualModel(step, flag_codes, tuple(class_codes))


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

    A coefficient in a class whose code is 0, or in a block of a bin whose flag code is 0, cannot be
    coded and is dropped (codes chosen on the same coefficients never do that)."""
    import constriction

    flag_codes = np.array(model.flag_codes, np.int64)
    class_codes = np.array(model.class_codes, np.int16)
    coded = _coded_blocks(layout, q) & (flag_codes[layout.bins] > 0)
    codes = class_codes[layout.classes]
    keep = coded[layout.block_of] & (codes > 0)
    coder = constriction.stream.stack.AnsCoder()
    if keep.any():  # the coefficients are decoded after the flags: pushed first
        coder.encode_reverse(q[keep].astype(np.int32), _laplace(), np.zeros(int(keep.sum())),
                             SCALES[codes[keep]])
    flagged = _flag_order(layout, flag_codes)
    if flagged.size:
        coder.encode_reverse(coded[flagged].astype(np.int32), _categorical(),
                             _flag_probabilities(flag_codes[layout.bins[flagged]]))
    return coder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, layout: TileLayout, model: ResidualModel) -> np.ndarray:
    """A tile's integer coefficients (coding order) from its residual stream; malformed:
    ``SciFormatError``."""
    import constriction

    if len(data) % 4:
        raise SciFormatError(f"residual stream of {len(data)} bytes is not whole u32 words")
    flag_codes = np.array(model.flag_codes, np.int64)
    class_codes = np.array(model.class_codes, np.int16)
    q = np.zeros(layout.classes.size, np.int32)
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        coded = np.zeros(len(layout.blocks), bool)
        flagged = _flag_order(layout, flag_codes)
        if flagged.size:
            coded[flagged] = coder.decode(_categorical(),
                                          _flag_probabilities(flag_codes[layout.bins[flagged]])) == 1
        codes = class_codes[layout.classes]
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
