"""Exact (lossless) tiles of format 3 (kind 4): a tile's values as a raw LZMA2 stream.

A sparse volume can cost less stored exactly than any lossy model of it (the neuron crop: 99.7 % zeros,
0.029 BPV losslessly); the spec is docs/format.md, "Kind 4". The standard library's ``lzma`` codes it;
the decoder never produces more than the tile's bytes, whatever the stream claims.
"""

from __future__ import annotations

import lzma
from collections.abc import Sequence

import numpy as np

from napari_sci.errors import SciFormatError

# the dtypes whose every value a float32 holds exactly (the decoder works in float32)
EXACT_DTYPES = tuple(np.dtype(name) for name in ("uint8", "int8", "uint16", "int16", "float32", "bool"))
DICTIONARY_BYTES = 1 << 22
ENCODE_PIECE_BYTES = 1 << 20  # input fed to the compressor at a time (see encode_exact's limit)
_FILTERS = [{"id": lzma.FILTER_LZMA2, "dict_size": DICTIONARY_BYTES}]
_ENCODER_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                     "dict_size": DICTIONARY_BYTES}]


def exact_dtype(dtype: np.dtype) -> bool:
    """Whether tiles of ``dtype`` may be stored exactly."""
    return np.dtype(dtype) in EXACT_DTYPES


def _stored(dtype: np.dtype) -> np.dtype:
    """The payload's byte order: little-endian."""
    return dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype


def encode_exact(values: np.ndarray, limit: int | None = None) -> bytes | None:
    """The kind-4 payload of a tile's values (their dtype must be one of ``EXACT_DTYPES``); ``None``
    once it is known to exceed ``limit`` bytes: compression stops there, so a dense tile costs the
    encoder about the budget's worth of input, not the whole tile (fed in pieces, the stream is the
    same bytes as compressed in one call)."""
    dtype = np.dtype(values.dtype)
    if not exact_dtype(dtype):
        raise ValueError(f"tiles of dtype {dtype} cannot be stored exactly")
    raw = memoryview(np.ascontiguousarray(values, dtype=_stored(dtype)).tobytes())
    compressor = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=_ENCODER_FILTERS)
    parts: list[bytes] = []
    size = 0
    for start in range(0, len(raw), ENCODE_PIECE_BYTES):
        parts.append(compressor.compress(raw[start:start + ENCODE_PIECE_BYTES]))
        size += len(parts[-1])
        if limit is not None and size > limit:
            return None
    parts.append(compressor.flush())
    if limit is not None and size + len(parts[-1]) > limit:
        return None
    return b"".join(parts)


def decode_exact(payload: bytes, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """A kind-4 tile's values; a stream that is malformed, or does not decompress to exactly the
    tile's bytes, raises ``SciFormatError``."""
    dtype = np.dtype(dtype)
    if not exact_dtype(dtype):
        raise SciFormatError(f"an exact tile in a file of dtype {dtype} (not one a float32 holds exactly)")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_FILTERS)
    try:
        raw = decompressor.decompress(payload, max_length=expected)
    except lzma.LZMAError as error:
        raise SciFormatError(f"an exact tile's LZMA2 stream is malformed: {error}") from error
    if len(raw) != expected or not decompressor.eof or decompressor.unused_data:
        raise SciFormatError(f"an exact tile's LZMA2 stream does not hold exactly its {expected} bytes")
    values = np.frombuffer(raw, dtype=_stored(dtype)).reshape(tuple(int(s) for s in shape))
    if dtype == np.bool_ and not np.all(np.frombuffer(raw, np.uint8) <= 1):
        raise SciFormatError("an exact bool tile holds a byte other than 0 or 1")
    return values.astype(dtype, copy=False)
