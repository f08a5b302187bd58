"""Format 3's loop filter (models 13 and 14): symmetric linear filters of radius 1–3 that the decoder
runs over the latent tiles' finished values (docs/format.md "Models 13 and 14"). Their records,
their choice per tile, and the filter itself — the one computation encoder and decoder share."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from napari_sci.errors import SciFormatError

MAX_RADIUS = 3
TAP_SCALE = 2.0 ** 13     # a stored tap c is worth c / 2^13
OFFSET_SCALE = 2.0 ** 16  # the stored offset β is worth β / 2^16 of the value range
NONE, SHARED = 0, 255     # a tile's choice: unfiltered, or the section's shared filter
_RADIUS = struct.Struct("<B")
_I16 = np.dtype("<i2")


@lru_cache(maxsize=MAX_RADIUS + 1)
def pair_offsets(radius: int) -> np.ndarray:
    """The filter's offsets, one of each opposite pair: ``1 ≤ |d|₁ ≤ radius`` with the first non-zero
    component positive, in C order — (P, 3), P = 3, 12, 31 for radius 1, 2, 3."""
    span = np.arange(-radius, radius + 1)
    grid = np.stack(np.meshgrid(span, span, span, indexing="ij"), axis=-1).reshape(-1, 3)
    norm = np.abs(grid).sum(axis=1)
    first = np.array([next((v for v in d if v), 0) for d in grid])
    return grid[(norm >= 1) & (norm <= radius) & (first > 0)]


def record_values(radius: int) -> int:
    """i16 values of a filter record: the centre tap, one tap a pair, the offset."""
    return len(pair_offsets(radius)) + 2


@dataclass(frozen=True)
class LoopFilter:
    """One filter: its radius and its stored integers (centre tap, pair taps, offset)."""

    radius: int
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.radius <= MAX_RADIUS:
            raise SciFormatError(f"loop filter radius {self.radius} is outside 1–{MAX_RADIUS}")
        if len(self.values) != record_values(self.radius):
            raise SciFormatError(f"a radius-{self.radius} loop filter holds {record_values(self.radius)} "
                                 f"values, not {len(self.values)}")

    @property
    def taps(self) -> np.ndarray:
        """Centre tap then pair taps, as the filter's real weights."""
        return np.asarray(self.values[:-1], np.float64) / TAP_SCALE

    @property
    def offset(self) -> float:
        return self.values[-1] / OFFSET_SCALE

    def pack(self) -> bytes:
        return np.asarray(self.values, _I16).tobytes()

    @classmethod
    def from_weights(cls, radius: int, taps: np.ndarray, offset: float) -> LoopFilter:
        """The nearest storable filter to real ``taps`` (centre, pairs) and ``offset``."""
        stored = np.clip(np.rint(np.append(np.asarray(taps) * TAP_SCALE, offset * OFFSET_SCALE)),
                         -32768, 32767).astype(np.int64)
        return cls(radius, tuple(int(v) for v in stored))

    @classmethod
    def unpack(cls, data: bytes, radius: int) -> LoopFilter:
        size = record_values(radius) * _I16.itemsize
        if len(data) < size:
            raise SciFormatError(f"loop filter record of {len(data)} bytes, {size} expected")
        return cls(radius, tuple(int(v) for v in np.frombuffer(data[:size], _I16)))


def record_bytes(radius: int) -> int:
    return record_values(radius) * _I16.itemsize if radius else 0


def pack_shared(shared: LoopFilter | None) -> bytes:
    """The model section's shared filter: its radius (0: none) and record."""
    return _RADIUS.pack(0) if shared is None else _RADIUS.pack(shared.radius) + shared.pack()


def unpack_shared(data: bytes) -> tuple[LoopFilter | None, int]:
    """The shared filter at the start of ``data`` and the bytes it took."""
    if not data:
        raise SciFormatError("the model section has no room for its shared loop filter")
    radius = data[0]
    if radius == 0:
        return None, 1
    if radius > MAX_RADIUS:
        raise SciFormatError(f"shared loop filter radius {radius} is outside 0–{MAX_RADIUS}")
    return LoopFilter.unpack(data[1:], radius), 1 + record_bytes(radius)


def pack_choice(choice: LoopFilter | int) -> bytes:
    """A tile's filter: ``NONE``, ``SHARED`` or its own filter (choice byte and record)."""
    if isinstance(choice, LoopFilter):
        return _RADIUS.pack(choice.radius) + choice.pack()
    if choice not in (NONE, SHARED):
        raise ValueError(f"a tile's loop filter is NONE, SHARED or a LoopFilter, not {choice!r}")
    return _RADIUS.pack(choice)


def choice_bytes(choice: LoopFilter | int) -> int:
    return 1 + (record_bytes(choice.radius) if isinstance(choice, LoopFilter) else 0)


def split_choice(data: bytes, shared: LoopFilter | None) -> tuple[LoopFilter | None, bytes]:
    """A tile's filter (``None``: unfiltered) from the start of ``data`` (what follows its latents),
    and the rest (its residual stream)."""
    if not data:
        raise SciFormatError("a tile payload ends before its loop filter choice")
    choice = data[0]
    if choice == NONE:
        return None, data[1:]
    if choice == SHARED:
        if shared is None:
            raise SciFormatError("a tile asks for the shared loop filter but the file has none")
        return shared, data[1:]
    if choice > MAX_RADIUS:
        raise SciFormatError(f"loop filter choice {choice} is not 0, 1–{MAX_RADIUS} or {SHARED}")
    return LoopFilter.unpack(data[1:], choice), data[1 + record_bytes(choice):]


def filter_region(padded: np.ndarray, reach: int, region: Sequence[slice], loop_filter: LoopFilter,
                  low: float, span: float) -> np.ndarray:
    """The filter on ``region`` of ``padded`` (float32 data values with ``reach`` ≥ the radius voxels
    on every side beyond the region's box: the neighbours, clamped at the volume's border)."""
    radius = loop_filter.radius
    if reach < radius:
        raise ValueError(f"filtering radius {radius} needs {radius} voxels around the region, not {reach}")
    taps = loop_filter.taps.astype(np.float32)

    def shifted(offset: Sequence[int]) -> np.ndarray:
        return padded[tuple(slice(s.start + reach + d, s.stop + reach + d) for s, d in zip(region, offset))]

    low32, span32 = np.float32(low), np.float32(span)
    total = taps[0] * (shifted((0, 0, 0)) - low32)
    for tap, offset in zip(taps[1:], pair_offsets(radius)):
        total += tap * ((shifted(offset) - low32) + (shifted(-offset) - low32))
    return low32 + total + span32 * np.float32(loop_filter.offset)
