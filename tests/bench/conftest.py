"""Small real crops for the harness tests (the shared data folder, as tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

DATA = Path(os.environ.get("NAPARI_SCI_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def _load(name: str) -> np.ndarray:
    path = DATA / name
    if not path.exists():
        pytest.fail(f"test data {path} is missing; set NAPARI_SCI_DATA to the shared data folder")
    return tifffile.imread(path)


@pytest.fixture(scope="session")
def lsm64() -> np.ndarray:
    """16×64×64 uint16 crop of the cellfinder light-sheet crop (cells on background)."""
    volume = _load("lsm_mousebrain_cells_cellfinder_crop16x256x256.tif")
    return np.ascontiguousarray(volume[:, 96:160, 96:160])


@pytest.fixture(scope="session")
def mri64() -> np.ndarray:
    """16×64×64 uint8 crop of the Colin27 T1 MRI (brain tissue)."""
    return np.ascontiguousarray(_load("mri_t1_colin27.tif")[80:96, 80:144, 60:124])
