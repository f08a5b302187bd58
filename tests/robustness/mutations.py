"""Mutating ``.sci`` bytes for the fuzz tests (``test_fuzz_reader.py`` and ``fuzz/fuzz_reader.py``).

Random damage is almost always caught by a CRC, so the mutators can also *refresh* every checksum
afterwards: then a mutation reaches the field validation, the tiling check and the decoder behind
them, which is where a reader would crash, hang or allocate too much.
"""

from __future__ import annotations

import struct
import warnings

import numpy as np

from napari_sci.core.lazy import SciArray
from napari_sci.errors import SciFormatError
from napari_sci.io.container import SciContents, parse
from napari_sci.io.format import BLOCK_RECORD, PREAMBLE, SUPPORTED_VERSIONS, crc32, unpack_header

INTERESTING_U32 = (0, 1, 2, 3, 7, 8, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1)
CRC_IN_RECORD = BLOCK_RECORD.fields["crc"][1]
FULL_DECODE_VOXELS = 50_000


def refresh_checksums(data: bytes) -> bytes:
    """``data`` with its header CRC and (where the header parses) every payload CRC recomputed."""
    if len(data) < PREAMBLE.size:
        return data
    length = struct.unpack_from("<I", data, 12)[0]
    end = PREAMBLE.size + length
    if end > len(data):
        return data
    out = bytearray(data)
    header = bytes(out[PREAMBLE.size: end])
    version = struct.unpack_from("<H", data, 8)[0]
    try:
        parsed = unpack_header(header, version if version in SUPPORTED_VERSIONS else 1, crc32(header))
    except SciFormatError:
        parsed = None
    if parsed is not None:
        records_at = end - BLOCK_RECORD.itemsize * len(parsed.blocks)  # the table ends every header
        at = end
        for i, size in enumerate(parsed.blocks["length"].tolist()):
            payload = bytes(out[at: at + size])
            at += size
            struct.pack_into("<I", out, records_at + BLOCK_RECORD.itemsize * i + CRC_IN_RECORD,
                             crc32(payload) if size else 0)
    struct.pack_into("<I", out, 16, crc32(bytes(out[PREAMBLE.size: end])))
    return bytes(out)


def check_accepted(contents: SciContents) -> None:
    """What an accepted file must give: arrays of the header's shape and dtype, inside its range."""
    header = contents.header
    array = SciArray(contents, cache_items=2)
    assert array.shape == header.shape
    assert array.dtype == header.dtype
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corner = array[tuple(slice(0, 3) for _ in header.shape)]
        assert corner.shape == tuple(min(3, s) for s in header.shape)
        parts = [corner]
        if header.n_voxels <= FULL_DECODE_VOXELS:
            full = array[...]
            assert full.shape == header.shape
            parts.append(full)
    for part in parts:
        assert part.dtype == header.dtype
        if header.dtype != np.bool_ and part.size:
            assert header.value_min <= float(part.min())
            assert float(part.max()) <= header.value_max


def parse_or_refuse(data: bytes) -> SciContents | None:
    """Parse; a ``SciFormatError`` (or subclass) is the only acceptable failure."""
    try:
        return parse(data)
    except SciFormatError:
        return None
