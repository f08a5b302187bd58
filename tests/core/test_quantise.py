import numpy as np
import pytest
import torch

from napari_sci.base.config import NetworkSpec
from napari_sci.base.networks import BlockNetwork
from napari_sci.core.quantise import (
    fit_codes_to_budget,
    network_tensor_sizes,
    step_scales,
    tensor_sensitivities,
)
from napari_sci.models.siren import BatchedFunnelSiren

SPEC = NetworkSpec()
NET = BlockNetwork(12, 6)


def weights(seed=0):
    return BatchedFunnelSiren([NET], 3, SPEC, torch.Generator().manual_seed(seed)).block_weights(0)


def test_random_sign_sensitivity_matches_per_sample_gradients():
    w = weights()
    module = BatchedFunnelSiren.from_weights([NET], [w], 3, SPEC)
    coords = torch.rand(1, 64, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    exact = np.zeros(2 * SPEC.layers)
    for i in range(64):
        module.zero_grad(set_to_none=True)
        module(coords[:, i: i + 1]).sum().backward()
        grads = [p.grad for pair in zip(module.weights, module.biases) for p in pair]
        exact += np.array([float(g.square().sum()) for g in grads]) / 64
    estimate = tensor_sensitivities(w, NET, 3, SPEC, torch.Generator().manual_seed(2), samples=4096,
                                    repeats=16)
    # different coordinates (same distribution), so only close; an unbiased estimate, not equal
    np.testing.assert_allclose(estimate, exact, rtol=0.5)


def test_budget_is_met_and_nearly_filled():
    nets = [weights(s) for s in range(3)]
    sizes = [network_tensor_sizes(3, NET, SPEC.layers)] * 3
    sens = tensor_sensitivities(nets[0], NET, 3, SPEC, torch.Generator().manual_seed(0))
    scales = [step_scales(sizes[0], sens, 1.0)] * 3
    for budget in (200, 500, 1500):
        _, payloads = fit_codes_to_budget(nets, sizes, scales, budget)
        total = sum(len(p) for p in payloads)
        assert total <= budget
        assert total > 0.9 * budget



def test_checkpoint_runs_between_coding_passes_and_can_stop_the_search():
    """A cancel raised by the checkpoint ends the bisection at that pass, not after 40 of them."""
    nets = [weights(s) for s in range(2)]
    sizes = [network_tensor_sizes(3, NET, SPEC.layers)] * 2
    sens = tensor_sensitivities(nets[0], NET, 3, SPEC, torch.Generator().manual_seed(0))
    scales = [step_scales(sizes[0], sens, 1.0)] * 2
    calls = []

    def checkpoint():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        fit_codes_to_budget(nets, sizes, scales, 500, checkpoint=checkpoint)
    assert len(calls) == 3
    passes = []
    fit_codes_to_budget(nets, sizes, scales, 500, checkpoint=lambda: passes.append(1))
    assert len(passes) > 3  # one per bisection pass

def test_quantisation_aware_forward_matches_dequantised_weights():
    from napari_sci.io.weights import TensorCode, dequantised, step_code_for

    w = weights(3)
    sizes = network_tensor_sizes(3, NET, SPEC.layers)
    codes = [TensorCode(step_code_for(0.01), 64) for _ in sizes]
    module = BatchedFunnelSiren.from_weights([NET], [w], 3, SPEC)
    module.set_quantisation([[c.step for c in codes]])
    reference = BatchedFunnelSiren.from_weights([NET], [dequantised(w, sizes, codes)], 3, SPEC)
    coords = torch.rand(1, 100, 3) * 2 - 1
    torch.testing.assert_close(module(coords), reference(coords), atol=1e-5, rtol=1e-5)
    module(coords).sum().backward()
    assert module.weights[1].grad.abs().sum() > 0  # straight-through: gradients still flow
