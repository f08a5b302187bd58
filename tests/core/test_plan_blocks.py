"""plan_blocks (the partition widget's preview) must match what encode builds, block for block."""

import numpy as np
import pytest

from napari_sci.core.codec import encode, plan_blocks
from napari_sci.core.metrics import max_abs_error
from napari_sci.core.settings import compress_config
from napari_sci.errors import SciBudgetError


@pytest.mark.parametrize("settings", [{"bpv": 0.5}, {"ratio": 30, "max_blocks": 5, "max_depth": 2}])
def test_plan_is_what_encode_builds(mri, settings):
    config = compress_config(steps=0, device="cpu", **settings)
    plan = plan_blocks(mri, config)
    result = encode(mri, config)
    assert plan.partition.blocks == result.partition.blocks
    assert plan.networks == result.networks
    assert plan.target_bytes == result.target_bytes
    assert sum(plan.params) == result.n_params
    assert len(plan.partition.blocks) <= config.partition.max_blocks


def test_plan_refuses_an_impossible_budget(mri):
    with pytest.raises(SciBudgetError, match="smallest achievable"):
        plan_blocks(mri, compress_config(bpv=0.001))


def test_max_abs_error():
    a = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    b = np.array([[1, 10], [15, 30]], dtype=np.uint8)
    assert max_abs_error(a, b) == 5.0
    assert max_abs_error(a[:0], b[:0]) == 0.0
