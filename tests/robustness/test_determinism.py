"""Same input, settings and seed → the same ``.sci`` bytes on CPU: twice in one process and once
in a fresh interpreter (which catches state that leaks between runs or depends on the process)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from napari_sci.base.config import compress_config
from napari_sci.core.codec import encode

SETTINGS = dict(bpv=2, steps=15, seed=3, max_depth=1, min_leaf_side=4, useful_hidden=4,
                device="cpu")

SCRIPT = """
import sys
import numpy as np
from napari_sci.core.codec import encode
from napari_sci.base.config import compress_config
volume = np.load(sys.argv[1])
settings = dict(bpv=2, steps=15, seed=3, max_depth=1, min_leaf_side=4, useful_hidden=4, device="cpu")
sys.stdout.buffer.write(encode(volume, compress_config(**settings)).data)
"""


def test_encoding_is_bit_identical(mri, tmp_path):
    volume = np.ascontiguousarray(mri[:16, :24, :24])
    first = encode(volume, compress_config(**SETTINGS)).data
    second = encode(volume.copy(), compress_config(**SETTINGS)).data
    assert first == second
    np.save(tmp_path / "v.npy", volume)
    fresh = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "v.npy")],
                           capture_output=True, check=True, timeout=600).stdout
    assert fresh == first
    other_seed = encode(volume, compress_config(**{**SETTINGS, "seed": 4})).data
    assert other_seed != first
