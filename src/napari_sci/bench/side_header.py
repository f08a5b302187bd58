"""The bytes every non-SCI codec adds so its output decodes on its own, and the value mapping.

Byte rule (the same for every codec): a codec's output is one byte string; the decoder receives
nothing else. For the classical codecs and the NeRF baseline that string is a fixed 30-byte side
header followed by the codec's own stream::

    offset  size  field
    0       1     dtype code (see DTYPE_CODES)
    1       1     ndim (1..3)
    2       12    shape, 3 × uint32 little-endian (unused axes 0)
    14      16    value min, value max of the original, 2 × float64 little-endian

A ``.sci`` file (``sci``, ``siren``) is self-describing already and gets no side header. The header is
paid for even where a codec's own stream repeats the shape; at the smallest budget used here (0.02 BPV
of the smallest volume, about 6 KB) it is 0.5 % of the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from napari_sci.base.volume import ValueRange, to_dtype, value_range
from napari_sci.errors import SciError, SciInputError

DTYPE_CODES: dict[str, int] = {"uint8": 1, "uint16": 2, "int8": 3, "int16": 4}
_DTYPES = {code: np.dtype(name) for name, code in DTYPE_CODES.items()}
_LAYOUT = struct.Struct("<BB3I2d")
SIDE_BYTES = _LAYOUT.size


class BenchFormatError(SciError):
    """A codec's byte string is not what its decoder expects."""


@dataclass(frozen=True)
class SideInfo:
    """What a decoder needs besides the codec's stream: shape, dtype, value range."""

    shape: tuple[int, ...]
    dtype: np.dtype
    low: float
    high: float

    @classmethod
    def of(cls, volume: np.ndarray) -> SideInfo:
        check_bench_volume(volume)
        data = value_range(volume)
        return cls(tuple(int(s) for s in volume.shape), np.dtype(volume.dtype), data.low, data.high)

    @property
    def span(self) -> float:
        return self.high - self.low

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def check_bench_volume(volume: np.ndarray) -> None:
    """The harness compares codecs on integer volumes of at most 16 bits (the data set's dtypes)."""
    if np.dtype(volume.dtype).name not in DTYPE_CODES:
        raise SciInputError(f"benchmark volumes must be one of {sorted(DTYPE_CODES)}, "
                            f"got {volume.dtype}")
    if not 1 <= volume.ndim <= 3 or min(volume.shape) < 1:
        raise SciInputError(f"benchmark volumes must be 1-3D and non-empty, got {volume.shape}")


def pack(side: SideInfo, payload: bytes) -> bytes:
    """Side header + payload: the complete byte string a decoder gets."""
    shape = tuple(side.shape) + (0,) * (3 - len(side.shape))
    head = _LAYOUT.pack(DTYPE_CODES[side.dtype.name], len(side.shape), *shape, side.low, side.high)
    return head + bytes(payload)


def unpack(blob: bytes) -> tuple[SideInfo, bytes]:
    """Split a byte string made by :func:`pack`; checks the header's fields."""
    if len(blob) < SIDE_BYTES:
        raise BenchFormatError(f"{len(blob)} bytes is shorter than the {SIDE_BYTES}-byte side header")
    code, ndim, *rest = _LAYOUT.unpack_from(blob)
    shape, (low, high) = tuple(rest[:ndim]), rest[3:]
    if code not in _DTYPES or not 1 <= ndim <= 3 or min(shape) < 1 or not low <= high:
        raise BenchFormatError(f"bad side header: dtype code {code}, shape {shape}, range {low}..{high}")
    return SideInfo(shape, _DTYPES[code], low, high), blob[SIDE_BYTES:]


@dataclass(frozen=True)
class ValueMap:
    """Linear map of the data's [min, max] onto a codec's integer range [0, 2**bits - 1].

    Exact (decoding recovers every value) when max - min <= 2**bits - 1; otherwise it re-quantises
    the values to 2**bits levels, which the results' notes say.
    """

    low: float
    high: float
    bits: int

    @property
    def top(self) -> int:
        return (1 << self.bits) - 1

    @property
    def exact(self) -> bool:
        return self.high - self.low <= self.top

    def to_codes(self, volume: np.ndarray, dtype: DTypeLike = np.uint16) -> np.ndarray:
        span = self.high - self.low
        if span <= 0:
            return np.zeros(volume.shape, dtype=dtype)
        scaled = (volume.astype(np.float64) - self.low) * (self.top / span)
        return np.rint(scaled).astype(dtype)

    def from_codes(self, codes: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Codes (or any real values on the code scale) back to the original dtype, clipped."""
        span = self.high - self.low
        values = codes.astype(np.float64) * (span / self.top) + self.low
        return to_dtype(values, dtype, ValueRange(self.low, self.high))

    def note(self) -> str:
        how = "exact" if self.exact else f"re-quantised: span {self.high - self.low:g} > {self.top}"
        return f"values mapped linearly [{self.low:g}, {self.high:g}] -> [0, {self.top}] ({how})"


def value_map(side: SideInfo, bits: int) -> ValueMap:
    return ValueMap(side.low, side.high, bits)


def frames_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(slices, height, width) of a 1-3D shape: slice-wise codecs see a 2D image as one slice."""
    padded = (1,) * (3 - len(shape)) + tuple(shape)
    return padded[0], padded[1], padded[2]


def write_varint(value: int) -> bytes:
    """LEB128 unsigned integer: the per-slice lengths of slice-wise codecs cost 2-3 bytes each."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """(value, next offset) of the LEB128 integer at ``offset``."""
    value = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise BenchFormatError("truncated or overlong length field")
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        offset, shift = offset + 1, shift + 7
        if not byte & 0x80:
            return value, offset
