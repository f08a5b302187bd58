"""A ``.sci.zarr`` folder dropped on napari opens as a lazy multiscale layer whose coarser levels are
decoded at coarser coordinates."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sci
from napari_sci._napari._reader import get_reader, read_sci
from napari_sci.base.config import StoreConfig, compress_config
from napari_sci.store.run import compress_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sample: np.ndarray):
    """64×32×32 of the bundled MRI sample in two 32³ chunks, fitted in this process."""
    folder = tmp_path_factory.mktemp("store")
    source = folder / "mri.npy"
    np.save(source, np.ascontiguousarray(sample[:, 48:80, 48:80]))
    out = folder / "mri.sci.zarr"
    compress_store(source, out, compress_config(bpv=1.0, steps=30, max_depth=1),
                   StoreConfig(chunks=32, workers=0))
    return out


def test_the_reader_takes_a_store_folder_and_refuses_other_folders(store, tmp_path):
    assert get_reader(str(store)) is read_sci
    assert get_reader(str(store) + "/") is read_sci
    plain = tmp_path / "plain.sci.zarr"
    plain.mkdir()  # no zarr.json
    assert get_reader(str(plain)) is None
    assert get_reader(str(tmp_path)) is None


def test_a_store_opens_as_a_multiscale_layer(make_napari_viewer, store):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(store), plugin="napari-sci")
    assert layer.multiscale
    assert layer.name == "mri"
    assert [tuple(level.shape) for level in layer.data] == [(64, 32, 32), (32, 16, 16)]
    levels = napari_sci.open_sci(store).levels
    np.testing.assert_array_equal(np.asarray(layer.data[0][20]), levels[0][20])
    np.testing.assert_array_equal(np.asarray(layer.data[1][10]), levels[1][10])
    assert layer.metadata["sci_store"]["report"]["n_chunks"] == 2
    assert layer.contrast_limits[1] > layer.contrast_limits[0]
