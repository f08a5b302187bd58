"""The side header, the value map and the LEB128 lengths every non-SCI codec's bytes rely on."""

import numpy as np
import pytest

from napari_sci.bench.side_header import (
    SIDE_BYTES,
    BenchFormatError,
    SideInfo,
    ValueMap,
    pack,
    read_varint,
    unpack,
    write_varint,
)
from napari_sci.errors import SciInputError


def test_pack_unpack_round_trip(lsm64):
    side = SideInfo.of(lsm64)
    blob = pack(side, b"payload")
    assert len(blob) == SIDE_BYTES + len(b"payload") == 30 + 7
    again, payload = unpack(blob)
    assert again == side
    assert payload == b"payload"
    assert again.shape == lsm64.shape
    assert again.dtype == np.uint16
    assert (again.low, again.high) == (lsm64.min(), lsm64.max())


@pytest.mark.parametrize("blob", [b"", b"\x00" * 29, b"\x09" + b"\x00" * 40])
def test_bad_side_header(blob):
    with pytest.raises(BenchFormatError):
        unpack(blob)


def test_unsupported_dtype():
    with pytest.raises(SciInputError, match="uint8"):
        SideInfo.of(np.zeros((2, 2, 2), dtype=np.float32))


def test_value_map_exact_when_the_span_fits():
    values = np.arange(100, 100 + 4096, dtype=np.uint16)
    mapping = ValueMap(100, 100 + 4095, 12)
    assert mapping.exact
    assert "exact" in mapping.note()
    np.testing.assert_array_equal(mapping.from_codes(mapping.to_codes(values), values.dtype), values)


def test_value_map_requantises_a_wider_span():
    values = np.arange(0, 5000, dtype=np.uint16)
    mapping = ValueMap(0, 4999, 10)
    assert not mapping.exact
    assert "re-quantised" in mapping.note()
    back = mapping.from_codes(mapping.to_codes(values), values.dtype)
    assert back.dtype == np.uint16
    assert np.abs(back.astype(int) - values).max() <= 3


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**21, 2**40])
def test_varint_round_trip(value):
    data = b"x" + write_varint(value) + b"y"
    assert read_varint(data, 1) == (value, len(data) - 1)


def test_truncated_varint():
    with pytest.raises(BenchFormatError):
        read_varint(b"\x80\x80", 0)
