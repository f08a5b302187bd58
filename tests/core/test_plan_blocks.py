"""plan_blocks must show exactly the blocks and widths that encode then fits (GUI preview, benchmarks)."""

import pytest

from napari_sci.base.config import compress_config
from napari_sci.core.codec import encode, plan_blocks
from napari_sci.errors import SciBudgetError


@pytest.mark.parametrize(("bpv", "method"), [(0.5, "adaptive"), (1.0, "equal"), (0.25, "none")])
def test_plan_matches_what_encode_fits(mri, bpv, method):
    config = compress_config(bpv=bpv, steps=2, method=method, device="cpu", samples_per_block=256)
    plan = plan_blocks(mri, config)
    result = encode(mri, config)
    assert [b.node for b in plan.partition.blocks] == [b.node for b in result.partition.blocks]
    assert plan.networks == tuple(result.networks)
    assert plan.target_bytes == result.target_bytes
    assert sum(plan.params) == sum(n.params(mri.ndim, config.network.layers) for n in result.networks)
    assert len(plan.params) == len(plan.partition.blocks)


def test_plan_refuses_an_impossible_budget(mri):
    with pytest.raises(SciBudgetError, match="too small"):
        plan_blocks(mri, compress_config(bpv=1e-5, device="cpu"))
