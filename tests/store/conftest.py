"""Fixtures of the chunked-store tests: a small real CT crop as a zarr input and a store of it fitted in
this process (the reference every Dask run must reproduce byte for byte)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from store_helpers import CHUNK  # type: ignore[import-not-found]

from napari_sci.base.config import StoreConfig, compress_config


@pytest.fixture(scope="session")
def ct_volume() -> np.ndarray:
    """64×48×40 uint16 crop of the CT: 2×2×2 chunks of 32³, the far ones 16 and 8 voxels thin."""
    import tifffile

    data = Path(os.environ.get("NAPARI_SCI_DATA", Path(__file__).resolve().parents[2].parent / "shared"
                               / "data"))
    return np.ascontiguousarray(tifffile.imread(data / "ct_aorta_totalseg.tif")[50:114, 40:88, 40:80])


@pytest.fixture(scope="session")
def ct_zarr(tmp_path_factory: pytest.TempPathFactory, ct_volume: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("input") / "ct.zarr"
    array = zarr.create_array(str(path), shape=ct_volume.shape, chunks=(16, 16, 16), dtype=ct_volume.dtype)
    array[...] = ct_volume
    return path


@pytest.fixture(scope="session")
def store_config():
    """Few steps, a shallow tree: fast chunks (the point here is the store, not the quality)."""
    return compress_config(bpv=1.0, steps=60, max_depth=1, seed=7, model="siren")


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory: pytest.TempPathFactory, ct_zarr: Path, store_config) -> Path:
    """The store fitted chunk after chunk in this process (``workers=0``, no Dask)."""
    import torch

    from napari_sci.store.run import compress_store

    out = tmp_path_factory.mktemp("reference") / "ct.sci.zarr"
    threads = torch.get_num_threads()
    try:
        compress_store(ct_zarr, out, store_config, StoreConfig(chunks=CHUNK, workers=0))
    finally:
        torch.set_num_threads(threads)
    return out
