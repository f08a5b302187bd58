import numpy as np
import pytest

import napari_sci
from napari_sci.base.config import compress_config


@pytest.fixture(scope="module")
def sci_path(tmp_path_factory, mri):
    path = tmp_path_factory.mktemp("lazy") / "mri.sci"
    config = dict(bpv=1.5, steps=100, max_depth=2, min_leaf_side=4, useful_hidden=4, model="siren")
    napari_sci.compress(mri, out=path, spacing=(2.0, 1.0, 0.5), **config)
    assert compress_config(**config)
    return path


@pytest.fixture(scope="module")
def full(sci_path):
    return napari_sci.decode(sci_path)


def test_array_like_interface(sci_path, mri):
    array = napari_sci.open_sci(sci_path)
    assert array.shape == mri.shape
    assert array.dtype == mri.dtype
    assert array.ndim == 3
    assert len(array) == mri.shape[0]
    assert array.header.spacing == (2.0, 1.0, 0.5)
    assert 1.3 < array.bpv <= 1.5


@pytest.mark.parametrize("key", [
    5, -1, (slice(None), 3), (Ellipsis, 7), (slice(2, 9), slice(None, None, 3), slice(30, 4, -2)),
    (slice(None, None, -1),), (1, 2, 3), (slice(5, 5),), np.int64(4),
])
def test_indexing_matches_numpy(sci_path, full, key):
    array = napari_sci.open_sci(sci_path)
    got = array[key]
    expected = full[key]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_bad_keys(sci_path):
    array = napari_sci.open_sci(sci_path)
    with pytest.raises(IndexError):
        array[100]
    with pytest.raises(IndexError):
        array[[1, 2]]
    with pytest.raises(IndexError):
        array[0, 0, 0, 0]


def test_slice_decodes_only_touched_blocks_and_caches(sci_path):
    array = napari_sci.open_sci(sci_path)
    array[0]
    first = array.blocks_decoded
    assert 0 < first < len(array.header.blocks)
    array[0]
    assert array.blocks_decoded == first  # served from the cache


def test_dask_view(sci_path, full):
    dask_array = napari_sci.open_sci(sci_path).to_dask()
    assert dask_array.chunksize == (1, *full.shape[1:])
    np.testing.assert_array_equal(dask_array[3].compute(), full[3])
    np.testing.assert_array_equal(np.asarray(dask_array), full)


def test_roi_decode(sci_path, full):
    roi = (slice(2, 10), slice(5, 25), slice(0, 10))
    np.testing.assert_array_equal(napari_sci.decode(sci_path, roi=roi), full[roi])
