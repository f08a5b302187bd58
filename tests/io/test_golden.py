"""The committed v1 file must keep decoding the same in every later version.

Regenerate (only when the format version is bumped, never to make a failing test pass) with
``NAPARI_SCI_REGEN_GOLDEN=1 pytest tests/io/test_golden.py``.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from napari_sci.io.container import parse, serialise
from napari_sci.io.format import FORMAT_VERSION
from napari_sci.io.lazy import SciArray

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_v1.sci"
DECODED = GOLDEN.with_name("golden_v1_decoded.npy")


@pytest.fixture(scope="module")
def golden(sample) -> bytes:
    if os.environ.get("NAPARI_SCI_REGEN_GOLDEN") == "1":
        import napari_sci

        crop = sample[20:36, 40:72, 40:80]  # BSD-3 Colin27, as bundled
        result = napari_sci.compress(crop, bpv=3.0, steps=300, seed=7, max_depth=2, min_leaf_side=4,
                                     useful_hidden=4, spacing=(1.0, 1.0, 1.0), device="cpu")
        GOLDEN.write_bytes(result.data)
        np.save(DECODED, SciArray(result.contents)[...])
    return GOLDEN.read_bytes()


def test_golden_decodes_as_recorded(golden):
    decoded = SciArray(parse(golden))[...]
    expected = np.load(DECODED)
    assert decoded.dtype == expected.dtype
    assert decoded.shape == expected.shape
    # bit-identical on the reference platform; at most one grey level apart elsewhere (float32 order)
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    assert difference.max() <= 1
    assert np.mean(difference == 0) > 0.999


def test_format_is_unchanged_without_a_version_bump(golden):
    contents = parse(golden)
    assert contents.header.version == 1
    if FORMAT_VERSION == 1:
        assert serialise(contents.header, contents.payloads) == golden


def test_golden_has_several_block_kinds(golden):
    blocks = parse(golden).header.blocks
    assert len(blocks) > 1
    assert (blocks["kind"] == 1).any()
