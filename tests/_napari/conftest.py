"""Fixtures of the napari tests: tiny real crops, a small .sci file, and waiting for workers.

Every test here runs headless under Xvfb (pytest-xvfb). ``make_napari_viewer(show=True)`` is used where
pixels are checked: an unshown canvas renders black.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import napari_sci

pytest.importorskip("napari")


@contextmanager
def _single_torch_thread() -> Iterator[None]:
    """Fit with one torch thread: the GUI thread needs the other core, and on a busy 2-core machine
    torch's spinning thread pool made 10 steps of a tiny fit take 8 s instead of 0.05 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    with _single_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny(sample: np.ndarray) -> np.ndarray:
    """16×48×48 uint8 crop of the bundled Colin27 sample (brain tissue)."""
    return np.ascontiguousarray(sample[24:40, 40:88, 40:88])


@pytest.fixture(scope="session")
def sci_file(tmp_path_factory: pytest.TempPathFactory, tiny: np.ndarray):
    """``tiny`` compressed at 1 BPV, 2 mm × 1 mm × 1 mm voxels (a few seconds of fitting), as SIREN
    blocks: many small tiles, which the tile-by-tile tests need (a grid file of this crop is one tile)."""
    path = tmp_path_factory.mktemp("sci") / "tiny.sci"
    with _single_torch_thread():  # session-scoped: set up before the module's one_torch_thread
        napari_sci.compress(tiny, bpv=1.0, out=path, spacing=(2.0, 1.0, 1.0), steps=200, device="cpu",
                            max_depth=2, min_leaf_side=4, model="siren")  # several SIREN blocks
    return path


@pytest.fixture
def wait_for(qtbot):
    """``wait_for(job)`` blocks (processing Qt events) until a widget's worker job has finished."""
    def wait(job, timeout: float = 60.0) -> None:
        qtbot.waitUntil(lambda: job is not None and not job.running, timeout=int(timeout * 1000))
    return wait
