"""Shared fixtures: small crops of the real volumes in ../shared/data (CI has that folder too)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_SCI_DATA", REPO.parent / "shared" / "data"))
SAMPLE = REPO / "src" / "napari_sci" / "data" / "mri_t1_colin27_crop.tif"


def _load(name: str) -> np.ndarray:
    path = DATA / name
    if not path.exists():
        pytest.fail(f"test data {path} is missing; set NAPARI_SCI_DATA to the shared data folder")
    return tifffile.imread(path)


@pytest.fixture(scope="session")
def mri() -> np.ndarray:
    """32×40×36 uint8 crop of the Colin27 T1 MRI (brain tissue, not background)."""
    return np.ascontiguousarray(_load("mri_t1_colin27.tif")[70:102, 90:130, 70:106])


@pytest.fixture(scope="session")
def ct() -> np.ndarray:
    """24×40×32 uint16 crop of the TotalSegmentator CT (values HU + 1024)."""
    return np.ascontiguousarray(_load("ct_aorta_totalseg.tif")[70:94, 40:80, 40:72])


@pytest.fixture(scope="session")
def lsm() -> np.ndarray:
    """16×48×48 uint16 crop of the cellfinder light-sheet crop."""
    volume = _load("lsm_mousebrain_cells_cellfinder_crop16x256x256.tif")
    return np.ascontiguousarray(volume[:, 100:148, 100:148])


@pytest.fixture(scope="session")
def neuron() -> np.ndarray:
    """32×64×64 uint8 crop through the sparse neuron (2.5 % non-zero, the rest exact zeros)."""
    return np.ascontiguousarray(_load("neuron_sparse_rivulet_crop64x256x256.tif")[0:32, 112:176, 80:144])


@pytest.fixture(scope="session")
def sample() -> np.ndarray:
    return tifffile.imread(SAMPLE)
