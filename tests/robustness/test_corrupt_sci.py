"""Damaged, truncated, hostile and foreign ``.sci`` files are refused with a ``SciFormatError``.

Exhaustive where it is cheap (parse takes well under a millisecond on the ~2.5 KB fixture): every
truncation, every bit flip. Hostile headers (huge sizes with a *valid* CRC) must be refused by the
file-length checks before anything is allocated, which ``tracemalloc`` verifies.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from dataclasses import replace

import numpy as np
import pytest

from napari_sci.core.lazy import SciArray
from napari_sci.errors import (
    SciChecksumError,
    SciFormatError,
    SciMemoryError,
    SciPathError,
    SciVersionError,
)
from napari_sci.io.container import parse, read_sci, serialise
from napari_sci.io.format import BLOCK_RECORD, KIND_CONSTANT, MAGIC, PREAMBLE, crc32, header_length

HEADER_AT = PREAMBLE.size


def header_len(data: bytes) -> int:
    return struct.unpack_from("<I", data, 12)[0]


def with_header_crc(data: bytearray) -> bytes:
    """Recompute the header CRC, so a change inside the header reaches the field validation."""
    length = header_len(bytes(data))
    struct.pack_into("<I", data, 16, crc32(bytes(data[HEADER_AT: HEADER_AT + length])))
    return bytes(data)


def tail_offset(data: bytes) -> int:
    """Offset (in the file) of the fixed fields after shape and spacing."""
    ndim = data[HEADER_AT]
    return HEADER_AT + 2 + 8 * ndim


def n_blocks_offset(data: bytes) -> int:
    ndim = data[HEADER_AT]
    return HEADER_AT + header_length(ndim, 0) - 4


def test_fixture_is_valid(small_sci):
    contents = parse(small_sci)
    assert contents.file_size == len(small_sci)
    assert SciArray(contents)[...].shape == (16, 16, 16)


def test_every_truncation_is_refused(small_sci):
    for cut in range(len(small_sci)):
        with pytest.raises(SciFormatError):
            parse(small_sci[:cut])


def test_every_bit_flip_is_refused(small_sci):
    """No flip anywhere decodes silently: the preamble is validated field by field (magic, version,
    flags, header length) and its header_crc must match; header and payloads carry CRC-32s."""
    data = bytearray(small_sci)
    kinds: dict[str, int] = {}
    for at in range(len(data)):
        for bit in range(8):
            data[at] ^= 1 << bit
            with pytest.raises(SciFormatError) as caught:
                parse(bytes(data))
            data[at] ^= 1 << bit
            kinds[type(caught.value).__name__] = kinds.get(type(caught.value).__name__, 0) + 1
    assert set(kinds) == {"SciFormatError", "SciChecksumError", "SciVersionError"}


def test_every_byte_of_the_preamble_is_checked(small_sci):
    for at in range(PREAMBLE.size):
        for value in (0x00, 0xFF, small_sci[at] ^ 0x80):
            if value == small_sci[at]:
                continue
            data = bytearray(small_sci)
            data[at] = value
            with pytest.raises(SciFormatError):
                parse(bytes(data))


def test_spliced_files_are_refused(small_sci):
    other = bytes(reversed(small_sci[HEADER_AT:]))
    for at in (8, 20, 100, len(small_sci) // 2, len(small_sci) - 4):
        with pytest.raises(SciFormatError):
            parse(small_sci[:at] + other[: len(small_sci) - at])


@pytest.mark.parametrize("version", [0, 4, 255, 65535])
def test_unknown_version(small_sci, version):
    data = bytearray(small_sci)
    struct.pack_into("<H", data, 8, version)
    with pytest.raises(SciVersionError, match=f"version {version} is not supported"):
        parse(bytes(data))


def test_older_file_relabelled_as_version_3_is_refused(small_sci):
    """Version 3 has a model id and section where version 2 has its block table: never misread."""
    data = bytearray(small_sci)
    struct.pack_into("<H", data, 8, 3)
    with pytest.raises(SciFormatError):
        parse(bytes(data))


def _peak_while(function, *args) -> int:
    tracemalloc.start()
    try:
        function(*args)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _refused_cheaply(data: bytes, match: str) -> None:
    def attempt() -> None:
        with pytest.raises(SciFormatError, match=match):
            parse(data)

    assert _peak_while(attempt) < 1 * 2**20


def test_huge_header_length_is_refused_before_allocating(small_sci):
    data = bytearray(small_sci)
    struct.pack_into("<I", data, 12, 2**32 - 1)
    _refused_cheaply(bytes(data), "exceeds the file")


def test_huge_block_count_is_refused_before_allocating(small_sci):
    data = bytearray(small_sci)
    struct.pack_into("<I", data, n_blocks_offset(small_sci), 2**32 - 1)
    _refused_cheaply(with_header_crc(data), "more than any block tree has nodes")


def test_huge_widths_with_matching_length_are_refused_before_allocating(small_sci_v1):
    """65535-wide layers whose payload length agrees with the widths: the file length gives it away."""
    from napari_sci.base.networks import param_count

    header = parse(small_sci_v1).header
    blocks = header.blocks.copy()
    siren = int(np.flatnonzero(blocks["kind"] == 1)[0])
    blocks["first_width"][siren], blocks["hidden_width"][siren] = 65535, 12000
    params = param_count(3, 65535, 12000, header.layers)
    assert 2**31 < 4 * params < 2**32
    blocks["length"][siren] = 4 * params
    header_bytes = _pack(replace(header, blocks=blocks))
    data = struct.pack("<8sHHII", MAGIC, 1, 0, len(header_bytes), zlib.crc32(header_bytes))
    _refused_cheaply(data + header_bytes + small_sci_v1[HEADER_AT + header_len(small_sci_v1):], "truncated")


def _pack(header) -> bytes:
    from napari_sci.io.format import pack_header

    return pack_header(header)


@pytest.mark.parametrize("widths", [(65535, 65535), (0, 65535), (65535, 0)])
def test_absurd_widths_are_refused(small_sci, widths):
    contents = parse(small_sci)
    blocks = contents.header.blocks.copy()
    siren = int(np.flatnonzero(blocks["kind"] == 1)[0])
    blocks["first_width"][siren], blocks["hidden_width"][siren] = widths
    data = bytearray(_rewrite_header(small_sci, replace(contents.header, blocks=blocks)))
    with pytest.raises(SciFormatError):
        parse(bytes(data))


def _rewrite_header(original: bytes, header) -> bytes:
    """The file with a new header (payload bytes unchanged), every CRC in the header valid."""
    header_bytes = _pack(header)
    body = original[HEADER_AT + header_len(original):]
    version = struct.unpack_from("<H", original, 8)[0]
    return struct.pack("<8sHHII", MAGIC, version, 0, len(header_bytes), crc32(header_bytes)) + \
        header_bytes + body


def test_network_larger_than_its_block_is_refused(small_sci):
    """Found by fuzzing: a v2 payload of 252 bytes claiming a 35209×339 network decoded for minutes
    (the entropy decoder yields symbols past the end of a stream). No encoder writes a network with
    more parameters than its block has voxels."""
    contents = parse(small_sci)
    blocks = contents.header.blocks.copy()
    siren = int(np.flatnonzero(blocks["kind"] == 1)[0])
    blocks["first_width"][siren], blocks["hidden_width"][siren] = 35209, 339
    if contents.header.version == 1:
        from napari_sci.base.networks import param_count

        blocks["length"][siren] = 4 * param_count(3, 35209, 339, contents.header.layers)
    data = _rewrite_header(small_sci, replace(contents.header, blocks=blocks))
    with pytest.raises(SciFormatError, match=r"claims a network of|truncated"):
        parse(data)
    # within the payload-length rules of v2, only the size check stands in the way
    if contents.header.version == 2:
        with pytest.raises(SciFormatError, match="claims a network of"):
            parse(data)


def test_value_range_outside_the_dtype_is_refused(small_sci):
    header = parse(small_sci).header
    for low, high in ((-5.0, 100.0), (0.0, 256.0), (-1e300, 1e300)):
        with pytest.raises(SciFormatError, match="does not fit dtype uint8"):
            parse(_rewrite_header(small_sci, replace(header, value_min=low, value_max=high)))


def test_fractional_value_range_of_an_integer_dtype_is_refused(small_sci):
    """Found by fuzz/fuzz_reader.py: value_min = 1.4e-309 in a uint8 file decoded to 0 < value_min."""
    header = parse(small_sci).header
    for low, high in ((1.39e-309, 111.0), (0.0, 110.5)):
        with pytest.raises(SciFormatError, match="is not whole numbers"):
            parse(_rewrite_header(small_sci, replace(header, value_min=low, value_max=high)))


def test_non_finite_weights_are_refused(small_sci_v1):
    contents = parse(small_sci_v1)
    siren = int(np.flatnonzero(contents.header.blocks["kind"] == 1)[0])
    for bad in (np.nan, np.inf, -np.inf):
        weights = contents.weights(siren).copy()
        weights[3] = bad
        payloads = list(contents.payloads)
        payloads[siren] = weights.astype("<f4").tobytes()
        with pytest.raises(SciFormatError, match="non-finite weights"):
            parse(serialise(contents.header, payloads))


def test_hostile_but_finite_weights_decode_without_warnings(small_sci_v1):
    """Weights near float32's limit overflow inside the network; the decode still yields the header's
    shape and dtype, within the value range, and (filterwarnings=error) without a RuntimeWarning."""
    contents = parse(small_sci_v1)
    payloads = [np.full(len(p) // 4, 3e38, dtype="<f4").tobytes() if p else p
                for p in contents.payloads]
    decoded = SciArray(parse(serialise(contents.header, payloads)))[...]
    assert decoded.shape == contents.header.shape
    assert decoded.dtype == contents.header.dtype
    assert decoded.min() >= contents.header.value_min
    assert decoded.max() <= contents.header.value_max


def test_a_huge_constant_volume_parses_but_is_decoded_only_in_parts():
    """A valid 125-byte file may describe 2^32-1 voxels per axis; slices decode, the whole refuses."""
    blocks = np.zeros(1, dtype=BLOCK_RECORD)
    blocks[0] = (0, KIND_CONSTANT, 0, 0, 7.0, 7.0, 0, 0)
    from napari_sci.io.format import SciHeader

    side = 2**32 - 1
    header = SciHeader(shape=(side, side, side), dtype=np.dtype("uint8"), spacing=(1.0,) * 3,
                       value_min=7.0, value_max=7.0, tree_depth=3, min_leaf_side=8, layers=7,
                       w0=20.0, w0_hidden=30.0, fr=2.2, partition="none", allocation="size-over-d",
                       max_blocks=1, top_m=1, steps=0, seed=0, psnr=float("inf"), blocks=blocks)
    array = SciArray(parse(serialise(header, [b""])))
    assert array.shape == (side, side, side)
    np.testing.assert_array_equal(array[5, 10:12, -3:], np.full((2, 3), 7, np.uint8))
    with pytest.raises(SciMemoryError, match="decode a smaller region"):
        array[...]
    with pytest.raises(SciMemoryError):
        array[0]


def test_huge_volume_via_cli(tmp_path, capsys):
    from napari_sci.cli import main
    from napari_sci.io.format import SciHeader

    blocks = np.zeros(1, dtype=BLOCK_RECORD)
    blocks[0] = (0, KIND_CONSTANT, 0, 0, 3.0, 3.0, 0, 0)
    header = SciHeader(shape=(2**31, 2**31), dtype=np.dtype("uint16"), spacing=(1.0, 1.0),
                       value_min=3.0, value_max=3.0, tree_depth=0, min_leaf_side=1, layers=7,
                       w0=20.0, w0_hidden=30.0, fr=2.2, partition="none", allocation="equal",
                       max_blocks=1, top_m=1, steps=0, seed=0, psnr=float("inf"), blocks=blocks)
    path = tmp_path / "huge.sci"
    path.write_bytes(serialise(header, [b""]))
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    assert main(["decompress", str(path), "-o", str(tmp_path / "all.npy")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "decode a smaller region (--roi" in err
    assert main(["decompress", str(path), "-o", str(tmp_path / "roi.npy"), "--roi", "0:2,5:9"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "roi.npy"), np.full((2, 4), 3, np.uint16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.sci", "roi.npy"]


FOREIGN = {
    "empty": b"",
    "png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "tiff-le": b"II*\x00\x08\x00\x00\x00" + bytes(200),
    "tiff-be": b"MM\x00*\x00\x00\x00\x08" + bytes(200),
    "npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<u1', 'fortran_order': False, 'shape': (4,), }" + bytes(60),
    "text": b"hello, this is not a volume\n" * 20,
    "gzip": b"\x1f\x8b\x08\x00" + bytes(100),
    "magic-only": MAGIC,
    "almost-magic": MAGIC[:-1] + b"\x00" + bytes(100),
    "zeros": bytes(4096),
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_files_renamed_sci(tmp_path, name):
    path = tmp_path / f"{name}.sci"
    path.write_bytes(FOREIGN[name])
    with pytest.raises(SciFormatError):
        read_sci(path)
    with pytest.raises(SciFormatError):
        parse(FOREIGN[name])


def test_random_bytes_renamed_sci(tmp_path):
    rng = np.random.default_rng(5)
    for size in (1, 19, 20, 21, 100, 5000):
        path = tmp_path / "r.sci"
        path.write_bytes(rng.bytes(size))
        with pytest.raises(SciFormatError):
            read_sci(path)


def test_magic_with_random_rest(tmp_path):
    rng = np.random.default_rng(6)
    for _ in range(200):
        data = MAGIC + b"\x01\x00\x00\x00" + rng.bytes(int(rng.integers(0, 300)))
        with pytest.raises(SciFormatError):
            parse(data)


def test_unreadable_sci_paths(tmp_path):
    with pytest.raises(SciPathError, match="does not exist"):
        read_sci(tmp_path / "missing.sci")
    with pytest.raises(SciPathError, match="not a regular file"):
        read_sci(tmp_path)


def test_checksum_errors_name_the_damage(small_sci):
    data = bytearray(small_sci)
    data[HEADER_AT + 3] ^= 1
    with pytest.raises(SciChecksumError, match="header checksum"):
        parse(bytes(data))
    data = bytearray(small_sci)
    data[-1] ^= 1
    with pytest.raises(SciChecksumError, match="payload of block"):
        parse(bytes(data))


def test_an_ans_stream_ending_in_a_zero_word_is_refused_when_read():
    """Fuzz find (format 3): a tile payload whose last word is zero passed every check and failed only
    when its tile was decoded; the reader now refuses it, for v2 networks too."""
    from pathlib import Path

    from mutations import refresh_checksums

    data = (Path(__file__).resolve().parents[1] / "data" / "golden_v3.sci").read_bytes()
    contents = parse(data)
    end = len(data) - sum(len(p) for p in contents.payloads[1:])  # the first tile's payload ends here
    broken = bytearray(data)
    broken[end - 4: end] = b"\0\0\0\0"
    with pytest.raises(SciFormatError, match="entropy-coded stream"):
        parse(refresh_checksums(bytes(broken)))


def test_a_tile_too_large_to_decode_quickly_is_refused():
    """Fuzz find (format 3): a 2 KB file claimed one 67 M-voxel tile; its latents, decoded past the
    stream's end, took 30 s. Tiles are capped at 2^24 voxels and a larger claim is corrupt."""
    from dataclasses import replace
    from pathlib import Path

    from napari_sci.base.octree import BlockTree
    from napari_sci.io.container import assemble

    golden = parse((Path(__file__).resolve().parents[1] / "data" / "golden_v3.sci").read_bytes())
    blocks = golden.header.blocks[:1].copy()
    blocks["node"] = 0
    header = replace(golden.header, shape=(16, 64, 65600), tree_depth=0, blocks=blocks)
    tree = BlockTree(header.shape, 0, header.min_leaf_side)
    with pytest.raises(SciFormatError, match="larger than a tile may be"):
        assemble(header, golden.payloads[:1], tree)


def test_a_network_claiming_billions_of_parameters_is_refused_before_decoding():
    """An ANS stream yields any number of symbols: a v2 record with hidden_width 33,289 (5·10⁹
    parameters in a 608-byte payload) decoded until the fuzzer killed it (session 24)."""
    from pathlib import Path

    data = (Path(__file__).resolve().parents[1] / "data" / "golden_v2.sci").read_bytes()
    contents = parse(data)
    blocks = contents.header.blocks.copy()
    network = int(np.flatnonzero(blocks["kind"] == 1)[0])
    blocks["hidden_width"][network] = 33_289
    hostile = serialise(replace(contents.header, blocks=blocks), contents.payloads)
    with pytest.raises(SciFormatError, match="2\\^26"):
        parse(hostile)
