"""Exact tiles (format 3, kind 4): lossless round trips, and the reader refuses what does not decode."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_sci.errors import SciFormatError
from napari_sci.io.container import parse, serialise
from napari_sci.io.exact_tiles import EXACT_DTYPES, decode_exact, encode_exact
from napari_sci.io.format import KIND_EXACT

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_v3_exact.sci"


def _values(dtype: np.dtype, shape=(5, 7, 6)) -> np.ndarray:
    rng = np.random.default_rng(1)
    if dtype == np.bool_:
        return rng.random(shape) < 0.3
    if dtype.kind == "f":
        return rng.normal(0, 1e3, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", EXACT_DTYPES, ids=str)
def test_every_exact_dtype_round_trips_bit_for_bit(dtype):
    values = _values(dtype)
    back = decode_exact(encode_exact(values), values.shape, dtype)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, values)


def test_a_sparse_tile_costs_a_small_fraction_of_its_bytes():
    values = np.zeros((32, 64, 64), np.uint8)
    values[10, 5:50, 20] = 200
    assert len(encode_exact(values)) < values.nbytes / 200


def test_a_limit_stops_the_encoder_and_pieces_give_the_one_call_stream():
    """Over 1 MiB the tile is fed in pieces: the same bytes as one ``lzma.compress`` call; with a
    limit below its length the encoder gives up (``None``), at its length it gives the stream."""
    import lzma

    from napari_sci.io import exact_tiles

    values = _values(np.dtype("uint16"), (40, 128, 128))  # 1.25 MiB of noise: it hardly compresses
    whole = lzma.compress(values.tobytes(), format=lzma.FORMAT_RAW, filters=exact_tiles._ENCODER_FILTERS)
    assert encode_exact(values) == whole
    assert encode_exact(values, limit=len(whole)) == whole
    assert encode_exact(values, limit=len(whole) - 1) is None
    assert encode_exact(values, limit=1000) is None


@pytest.mark.parametrize("dtype", ["float64", "uint32", "int32"])
def test_dtypes_a_float32_cannot_hold_are_not_stored_exactly(dtype):
    with pytest.raises(ValueError, match="exactly"):
        encode_exact(np.zeros((2, 2), dtype))
    with pytest.raises(SciFormatError, match="float32"):
        decode_exact(encode_exact(np.zeros((2, 2), np.uint8)), (2, 2), np.dtype(dtype))


def test_streams_that_do_not_hold_exactly_the_tile_are_refused():
    values = _values(np.dtype("uint16"))
    payload = encode_exact(values)
    bad = {"truncated": (payload[:-5], values.shape), "trailing": (payload + b"\0\0", values.shape),
           "short tile": (payload, (5, 7, 5)), "long tile": (payload, (5, 7, 7)),
           "garbage": (bytes(range(256)) * 4, values.shape), "empty": (b"", values.shape)}
    for name, (data, shape) in bad.items():
        with pytest.raises(SciFormatError):  # noqa: PT012 - the name says which case did not raise
            decode_exact(data, shape, np.dtype("uint16"))
            pytest.fail(name)


def test_a_bool_tile_holds_only_zeros_and_ones():
    payload = encode_exact(np.full((3, 4), 2, np.uint8))
    with pytest.raises(SciFormatError, match="0 or 1"):
        decode_exact(payload, (3, 4), np.dtype(bool))


def _rewritten(**changes):
    contents = parse(GOLDEN.read_bytes())
    header, payloads = contents.header, list(contents.payloads)
    blocks = header.blocks.copy()
    exact = int(np.flatnonzero(blocks["kind"] == KIND_EXACT)[0])
    if "payload" in changes:
        payloads[exact] = changes.pop("payload")
    if "hi" in changes:
        blocks["hi"][exact] = changes.pop("hi")
    return serialise(replace(header, blocks=blocks, **changes), payloads)


def test_the_reader_refuses_exact_tiles_it_could_not_decode():
    """Checksums recomputed, so each file reaches the exact-tile checks."""
    parse(_rewritten())  # the untouched file is accepted
    with pytest.raises(SciFormatError, match="LZMA2"):
        parse(_rewritten(payload=b"\x01\x02not an lzma2 stream"))
    with pytest.raises(SciFormatError, match="outside its stated range"):
        parse(_rewritten(hi=1.0))
    with pytest.raises(SciFormatError, match="float32"):
        parse(_rewritten(dtype=np.dtype("float64")))
