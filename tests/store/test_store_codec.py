"""zarr-python reads a store's chunks through the registered ``napari-sci`` codec; bad chunks are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import zarr

import napari_sci
from napari_sci.errors import SciChecksumError, SciError, SciFormatError
from napari_sci.store.codec import SciChunkCodec, decode_chunk

REPO = Path(__file__).resolve().parents[2]


def test_zarr_reads_the_store_through_the_codec_as_open_sci_does(reference_store, ct_volume):
    array = zarr.open(str(reference_store))["0"]
    assert isinstance(array, zarr.Array)
    assert array.shape == ct_volume.shape
    assert array.dtype == ct_volume.dtype
    voxels = array[...]
    lazily = napari_sci.open_sci(reference_store)
    assert np.array_equal(voxels, lazily[...])
    assert np.array_equal(array[40:64, 3:47:5, 33:40], lazily[40:64, 3:47:5, 33:40])
    error = np.abs(voxels.astype(float) - ct_volume).mean()
    assert error < 0.5 * np.abs(ct_volume - ct_volume.mean()).mean()  # a fit, not a constant


def test_each_chunk_is_the_sci_file_of_its_region(reference_store, tmp_path):
    corner = tmp_path / "corner.sci"  # the far corner chunk: 32×16×8
    corner.write_bytes((reference_store / "0" / "c" / "1" / "1" / "1").read_bytes())
    single = napari_sci.decode(corner)
    assert single.shape == (32, 16, 8)
    assert np.array_equal(single, napari_sci.open_sci(reference_store)[32:64, 32:48, 32:40])


def test_the_group_carries_ome_metadata_and_the_budget(reference_store):
    attrs = dict(zarr.open_group(str(reference_store), mode="r").attrs)
    multiscale = attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert multiscale["datasets"][0]["path"] == "0"
    info = attrs["napari_sci"]
    assert info["budget"]["rule"] == "same-bpv"
    assert info["budget"]["bpv"] == 1.0
    report = info["report"]
    assert report["n_chunks"] == 8
    assert report["n_bytes"] == sum(p.stat().st_size for p in (reference_store / "0" / "c").rglob("*")
                                    if p.is_file())
    assert report["n_bytes"] <= report["target_bytes"]


def test_a_damaged_chunk_is_refused_not_guessed(reference_store, tmp_path):
    import shutil

    copy = tmp_path / "damaged.sci.zarr"
    shutil.copytree(reference_store, copy)
    chunk = copy / "0" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[-3] ^= 0x55
    chunk.write_bytes(bytes(data))
    with pytest.raises(SciChecksumError):
        zarr.open(str(copy))["0"][0:4, 0:4, 0:4]
    with pytest.raises(SciChecksumError):
        napari_sci.open_sci(copy)[0:4, 0:4, 0:4]
    assert np.array_equal(zarr.open(str(copy))["0"][40:44, 0:4, 0:4],
                          zarr.open(str(reference_store))["0"][40:44, 0:4, 0:4])  # others still read


def test_writing_through_zarr_is_refused(reference_store, tmp_path):
    import shutil

    copy = tmp_path / "write.sci.zarr"
    shutil.copytree(reference_store, copy)
    array = zarr.open(str(copy), mode="r+")["0"]
    with pytest.raises(SciError, match="not supported"):
        array[0:2, 0:2, 0:2] = 1


def test_an_edge_chunk_is_padded_to_the_chunk_shape(reference_store):
    data = (reference_store / "0" / "c" / "1" / "1" / "1").read_bytes()
    padded = decode_chunk(data, (32, 32, 32), np.dtype(np.uint16), fill_value=0)
    assert padded.shape == (32, 32, 32)
    assert not padded[:, 16:, :].any()
    assert not padded[:, :, 8:].any()
    with pytest.raises(SciFormatError, match="does not fit"):
        decode_chunk(data, (16, 16, 16), np.dtype(np.uint16))
    with pytest.raises(SciFormatError, match="uint8"):
        decode_chunk(data, (32, 32, 32), np.dtype(np.uint8))


def test_the_codec_is_declared_for_zarr_and_round_trips_its_metadata(reference_store):
    text = (REPO / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."zarr.codecs"]', 1)[1].split("[", 1)[0]
    entry = re.search(r'^napari-sci = "([^"]+)"', section, re.MULTILINE).group(1)
    module, _, name = entry.partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is SciChunkCodec
    meta = json.loads((reference_store / "0" / "zarr.json").read_text())
    assert meta["codecs"] == [SciChunkCodec().to_dict()]
    assert SciChunkCodec.from_dict(meta["codecs"][0]) == SciChunkCodec()
    with pytest.raises(SciFormatError):
        SciChunkCodec.from_dict({"name": "napari-sci", "configuration": {"version": 99}})
