"""Fixtures for the robustness tests: a small real ``.sci`` file with several block kinds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sci.base.config import compress_config
from napari_sci.core.codec import encode
from napari_sci.io.container import parse


def _small_sci(mri: np.ndarray, version: int) -> bytes:
    """About 2.5 KB: a 16³ MRI crop whose lower half is zeroed, cut into its 8 octants (4 SIREN blocks
    of different widths, 4 constant ones), so exhaustive corruption loops stay fast."""
    volume = np.ascontiguousarray(mri[:16, :16, :16]).copy()
    volume[8:] = 0
    config = compress_config(bpv=5.0, steps=30, max_depth=1, min_leaf_side=4, method="equal",
                             max_blocks=8, layers=4, min_hidden=2, useful_hidden=2, seed=1,
                             device="cpu", format=version, model="siren")
    data = encode(volume, config).data
    assert parse(data).header.version == version
    kinds = set(parse(data).header.blocks["kind"].tolist())
    assert kinds == {0, 1}, kinds
    assert 1500 < len(data) < 3500
    return data


@pytest.fixture(scope="session", params=(1, 2), ids=("v1", "v2"))
def small_sci(request, mri) -> bytes:
    """The small file in every supported format version."""
    return _small_sci(mri, request.param)


@pytest.fixture(scope="session")
def small_sci_v1(mri) -> bytes:
    """For tests that write raw float32 weights (format v1's payload)."""
    return _small_sci(mri, 1)
