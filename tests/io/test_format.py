import struct

import numpy as np
import pytest

from napari_sci.errors import SciChecksumError, SciFormatError, SciVersionError
from napari_sci.io.format import (
    BLOCK_RECORD,
    FORMAT_VERSION,
    MAGIC,
    PREAMBLE,
    SciHeader,
    file_overhead,
    header_length,
    pack_header,
    pack_preamble,
    unpack_header,
    unpack_preamble,
)


def make_header(**changes) -> SciHeader:
    blocks = np.zeros(2, dtype=BLOCK_RECORD)
    blocks[0] = (1, 1, 7, 3, 0.0, 10.0, 4 * (4 * 7 + 8 * 3 + 4 * 4 * 3 + 4), 0)
    blocks[1] = (2, 0, 0, 0, 5.0, 5.0, 0, 0)
    fields = dict(shape=(8, 4, 4), dtype=np.dtype("uint16"), spacing=(2.0, 0.5, 0.5), value_min=0.0,
                  value_max=10.0, tree_depth=1, min_leaf_side=2, layers=7, w0=20.0, w0_hidden=30.0,
                  fr=2.2, partition="adaptive", allocation="size-over-d", max_blocks=50, top_m=1,
                  steps=100, seed=3, psnr=31.5, blocks=blocks)
    fields.update(changes)
    return SciHeader(**fields)


def test_header_sizes_match_the_spec():
    # docs/format.md: 3D header = 80 + 25·n bytes, 2D = 72 + 25·n, preamble 20
    assert BLOCK_RECORD.itemsize == 25
    assert header_length(3, 0) == 80
    assert header_length(2, 0) == 72
    assert header_length(3, 50) == 80 + 25 * 50
    assert file_overhead(3, 1) == 20 + 80 + 25
    assert PREAMBLE.size == 20


def test_header_round_trip():
    header = make_header()
    data = pack_header(header)
    assert len(data) == header_length(3, 2)
    back = unpack_header(data, 1, crc_of(data))
    assert back.shape == header.shape
    assert back.dtype == header.dtype
    assert back.spacing == header.spacing
    assert back.psnr == pytest.approx(31.5)
    assert back.partition == "adaptive"
    assert back.allocation == "size-over-d"
    np.testing.assert_array_equal(back.blocks, header.blocks)


def test_the_voxel_count_of_a_huge_shape_does_not_overflow():
    """A file may describe a volume far larger than itself; its voxel count is exact (it once wrapped
    to a negative int64, and the fuzz harness then took the volume for a small one: found 2026-11-28)."""
    shape = (4294901776, 16, 3093233680)
    assert make_header(shape=shape).n_voxels == 4294901776 * 16 * 3093233680 > 2**63


def test_little_endian_layout_of_the_preamble():
    data = pack_preamble(b"abc", 1)
    assert data[:8] == MAGIC == b"\x89SCI\r\n\x1a\n"
    assert data[8:10] == b"\x01\x00"
    assert pack_preamble(b"abc")[8:10] == FORMAT_VERSION.to_bytes(2, "little")
    assert data[10:12] == b"\x00\x00"
    assert data[12:16] == (3).to_bytes(4, "little")


def test_preamble_errors():
    good = pack_preamble(b"x" * 10)
    with pytest.raises(SciFormatError, match=r"not a \.sci file"):
        unpack_preamble(b"GIF89a" + good[6:], 100)
    with pytest.raises(SciVersionError, match="version 9"):
        unpack_preamble(good[:8] + (9).to_bytes(2, "little") + good[10:], 100)
    with pytest.raises(SciFormatError, match="flags"):
        unpack_preamble(good[:10] + b"\x01\x00" + good[12:], 100)
    with pytest.raises(SciFormatError, match="exceeds the file"):
        unpack_preamble(good, 25)


def crc_of(data: bytes) -> int:
    return struct.unpack("<I", pack_preamble(data)[16:20])[0]


@pytest.mark.parametrize(("changes", "word"), [
    ({"spacing": (0.0, 1.0, 1.0)}, "spacing"),
    ({"value_min": 11.0}, "value range"),
    ({"layers": 2}, "layers"),
    ({"w0": float("nan")}, "w0"),
    ({"tree_depth": 7}, "tree depth"),
])
def test_invalid_fields_are_refused(changes, word):
    data = pack_header(make_header(**changes))
    with pytest.raises(SciFormatError, match=word):
        unpack_header(data, 1, crc_of(data))


def test_wrong_payload_length_is_refused():
    header = make_header()
    header.blocks[0]["length"] += 4
    data = pack_header(header)
    with pytest.raises(SciFormatError, match="payload is"):
        unpack_header(data, 1, crc_of(data))


def test_header_checksum_is_checked_first():
    data = pack_header(make_header())
    with pytest.raises(SciChecksumError):
        unpack_header(data, 1, crc_of(data) ^ 1)
