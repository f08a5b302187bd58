"""The residual layer of format 3's models 7 and 8: 8³ DCT blocks of integer coefficients per tile.

A latent fit's rate–distortion curve flattens above ~0.1 BPV; a block transform codes what the latents
leave at a far steeper slope (docs/benchmarks.md §7, session 26). Spec: docs/format.md "Models 7 and 8".
Contexts come from integers only (the tile's level-1 latents, the coefficient's position), so encoder
and decoder agree on every machine; the values are a float inverse DCT.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.fft import dctn, idctn

from napari_sci.errors import SciFormatError
from napari_sci.io.laplace_codes import LATENT_LIMIT, SCALE_CODE_ZERO, laplace_bits_each, scale_of

BLOCK = 8
BANDS = 12
ACTIVITY_THRESHOLDS = (1, 4, 16, 64, 256)
BINS = len(ACTIVITY_THRESHOLDS) + 1
CLASSES = BINS * BANDS
STEP_RANGE = (2.0 ** -24, 1.0)
_STEP = struct.Struct("<f")
SECTION_BYTES = _STEP.size + BINS + CLASSES
_LENGTH = struct.Struct("<I")
SCALES = np.array([scale_of(c) if c else 1.0 for c in range(256)])


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


def _blocks(tile_shape: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Every block's index and slices, C order."""
    cuts = [block_cuts(s) for s in tile_shape]
    out = []
    for index in np.ndindex(*(len(c) for c in cuts)):
        out.append((tuple(index), tuple(slice(*cuts[a][i]) for a, i in enumerate(index))))
    return out


def transform(residual: np.ndarray) -> list[np.ndarray]:
    """The orthonormal DCT-II of every block of a tile's residual (float64), C order."""
    return [dctn(np.asarray(residual[s], np.float64), norm="ortho") for _, s in _blocks(residual.shape)]


def reconstruct(tile_shape: Sequence[int], coefficients: Sequence[np.ndarray], step: float) -> np.ndarray:
    """A tile's residual (float32, normalised values) from its blocks' integer coefficients."""
    out = np.zeros(tuple(tile_shape), np.float32)
    for (_, s), q in zip(_blocks(tile_shape), coefficients):
        if q.any():
            out[s] = idctn(q.astype(np.float64) * step, norm="ortho")
    return out


def quantise(coefficients: Sequence[np.ndarray], step: float, offset: float = 0.33) -> list[np.ndarray]:
    """Dead-zone quantisation: sign · ⌊|X|/step + offset⌋, clipped to the symbol range."""
    return [np.clip(np.sign(c) * np.floor(np.abs(c) / step + offset), -LATENT_LIMIT, LATENT_LIMIT
                    ).astype(np.int64) for c in coefficients]


def _classes(tile_shape: Sequence[int], bins: np.ndarray) -> list[np.ndarray]:
    return [BANDS * int(bins[index]) + _band(tuple(sl.stop - sl.start for sl in s))
            for index, s in _blocks(tile_shape)]


def best_codes(tiles: Sequence[tuple[Sequence[int], np.ndarray | None, Sequence[np.ndarray]]],
               step: float) -> ResidualModel:
    """Flag and class codes minimising the ideal code length of these tiles' coefficients
    (each tile: its shape, its level-1 latents, its blocks' integer coefficients)."""
    flags = np.zeros((BINS, 2), np.int64)
    symbols: list[list[np.ndarray]] = [[] for _ in range(CLASSES)]
    for shape, level1, blocks in tiles:
        bins = activity_bins(shape, level1).reshape(-1)
        for b, classes, q in zip(bins, _classes(shape, activity_bins(shape, level1)), blocks):
            coded = bool(q.any())
            flags[b, int(coded)] += 1
            if coded:
                for c in np.unique(classes):
                    symbols[c].append(q[classes == c])
    flag_codes = []
    for zero, one in flags:
        flag_codes.append(0 if one == 0 else int(np.clip(round(256 * one / (zero + one)), 1, 255)))
    class_codes = []
    grid = np.arange(1, 256)
    for parts in symbols:
        values = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if not values.any():
            class_codes.append(SCALE_CODE_ZERO)
            continue
        magnitudes, counts = np.unique(np.abs(values), return_counts=True)
        mean = float(np.sum(magnitudes * counts) / counts.sum())
        centre = int(np.clip(round(16 * (math.log2(max(mean, 2.0 ** -6)) + 6)), 1, 255))
        candidates = grid[max(0, centre - 40):centre + 24]
        bits = [float(np.sum(counts * laplace_bits_each(magnitudes, SCALES[c]))) for c in candidates]
        class_codes.append(int(candidates[int(np.argmin(bits))]))
    return ResidualModel(step, tuple(flag_codes), tuple(class_codes))


def _categorical():  # type: ignore[no-untyped-def]
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def _laplace():  # type: ignore[no-untyped-def]
    import constriction

    return constriction.stream.model.QuantizedLaplace(-LATENT_LIMIT, LATENT_LIMIT)


def _flag_probabilities(codes: np.ndarray) -> np.ndarray:
    p = codes.astype(np.float64) / 256.0
    return np.stack((1.0 - p, p), axis=1)


def encode(tile_shape: Sequence[int], level1: np.ndarray | None, blocks: Sequence[np.ndarray],
           model: ResidualModel) -> bytes:
    """A tile's residual stream (u32 words) from its blocks' integer coefficients under ``model``.

    A block with a non-zero coefficient in a class whose code is 0, or in a bin whose flag code is 0,
    cannot be coded: such coefficients are dropped (the encoder's codes come from the same blocks, so
    this happens only when a caller passes codes chosen on other data)."""
    import constriction

    bins = activity_bins(tile_shape, level1).reshape(-1)
    flag_codes = np.array(model.flag_codes, np.int64)
    class_codes = np.array(model.class_codes, np.int64)
    coded = np.array([bool(q.any()) for q in blocks]) & (flag_codes[bins] > 0)
    symbols, codes = [], []
    for classes, q, on in zip(_classes(tile_shape, activity_bins(tile_shape, level1)), blocks, coded):
        if on:
            c = class_codes[classes].reshape(-1)
            keep = c > 0
            symbols.append(q.reshape(-1)[keep])
            codes.append(c[keep])
    coder = constriction.stream.stack.AnsCoder()
    if symbols:  # coefficients are decoded after the flags: pushed first
        flat = np.concatenate(symbols).astype(np.int32)
        if flat.size:
            coder.encode_reverse(flat, _laplace(), np.zeros(flat.size), SCALES[np.concatenate(codes)])
    flag_symbols, flag_p = [], []
    for b in range(BINS):
        members = np.flatnonzero(bins == b)
        if flag_codes[b] and members.size:
            flag_symbols.append(coded[members].astype(np.int32))
            flag_p.append(np.full(members.size, flag_codes[b]))
    if flag_symbols:
        coder.encode_reverse(np.concatenate(flag_symbols), _categorical(),
                             _flag_probabilities(np.concatenate(flag_p)))
    return coder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, tile_shape: Sequence[int], level1: np.ndarray | None,
           model: ResidualModel) -> list[np.ndarray]:
    """A tile's blocks' integer coefficients from its residual stream; malformed: ``SciFormatError``."""
    import constriction

    if len(data) % 4:
        raise SciFormatError(f"residual stream of {len(data)} bytes is not whole u32 words")
    bins_grid = activity_bins(tile_shape, level1)
    bins = bins_grid.reshape(-1)
    flag_codes = np.array(model.flag_codes, np.int64)
    class_codes = np.array(model.class_codes, np.int64)
    layout = _blocks(tile_shape)
    blocks = [np.zeros([sl.stop - sl.start for sl in s], np.int64) for _, s in layout]
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        coded = np.zeros(len(layout), bool)
        for b in range(BINS):
            members = np.flatnonzero(bins == b)
            if flag_codes[b] and members.size:
                p = _flag_probabilities(np.full(members.size, flag_codes[b]))
                coded[members] = coder.decode(_categorical(), p) == 1
        keeps, codes = [], []
        for i, classes in enumerate(_classes(tile_shape, bins_grid)):
            if coded[i]:
                c = class_codes[classes].reshape(-1)
                keeps.append((i, np.flatnonzero(c > 0)))
                codes.append(c[c > 0])
        if keeps:
            flat_codes = np.concatenate(codes)
            values = (coder.decode(_laplace(), np.zeros(flat_codes.size), SCALES[flat_codes])
                      if flat_codes.size else np.zeros(0, np.int64))
            at = 0
            for i, keep in keeps:
                blocks[i].reshape(-1)[keep] = values[at:at + keep.size]
                at += keep.size
    except (ValueError, RuntimeError, OverflowError) as error:
        raise SciFormatError(f"residual stream cannot be decoded: {error}") from error
    return blocks


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
