import os

import numpy as np
import pytest

from napari_sci.base.config import compress_config
from napari_sci.core.codec import encode
from napari_sci.errors import SciChecksumError, SciFileExistsError, SciFormatError, SciPathError
from napari_sci.io.container import parse, read_sci, write_atomic


@pytest.fixture(scope="module")
def small_file(mri) -> bytes:
    return encode(mri[:16, :20, :20], compress_config(bpv=2.0, steps=5, max_depth=1, min_leaf_side=4,
                                                     useful_hidden=4)).data


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path, small_file):
    target = tmp_path / "a.sci"
    write_atomic(target, small_file)
    assert target.read_bytes() == small_file
    with pytest.raises(SciFileExistsError, match="exists"):
        write_atomic(target, b"other")
    assert target.read_bytes() == small_file
    write_atomic(target, small_file[:50], overwrite=True)
    assert target.read_bytes() == small_file[:50]
    assert sorted(os.listdir(tmp_path)) == ["a.sci"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(SciPathError, match="No space"):
        write_atomic(tmp_path / "b.sci", b"x" * 1000)
    assert os.listdir(tmp_path) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(SciPathError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "a.sci", b"x")


def test_read_back_validates(tmp_path, small_file):
    path = tmp_path / "a.sci"
    path.write_bytes(small_file)
    contents = read_sci(path)
    assert contents.file_size == len(small_file)


@pytest.mark.parametrize("cut", [0, 7, 19, 20, 60, -30, -1])
def test_truncated_files_are_refused(small_file, cut):
    with pytest.raises(SciFormatError):
        parse(small_file[:cut])


def test_trailing_bytes_are_refused(small_file):
    with pytest.raises(SciFormatError, match="trailing"):
        parse(small_file + b"\0")


def test_payload_flip_fails_its_checksum(small_file):
    data = bytearray(small_file)
    data[-5] ^= 0x40
    with pytest.raises(SciChecksumError, match="payload"):
        parse(bytes(data))


def test_block_table_must_tile(small_file):
    contents = parse(small_file)
    from dataclasses import replace

    from napari_sci.io.container import serialise

    blocks = contents.header.blocks.copy()
    # the root overlaps every other block; a single child leaves gaps
    blocks["node"][0] = 1 if blocks["node"][0] == 0 else 0
    bad = serialise(replace(contents.header, blocks=blocks), contents.payloads)
    with pytest.raises(SciFormatError, match="tile"):
        parse(bad)


def test_foreign_file(tmp_path):
    path = tmp_path / "x.sci"
    path.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(SciFormatError, match=r"not a \.sci file"):
        read_sci(path)
