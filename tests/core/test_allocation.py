import numpy as np
import pytest
import torch

from napari_sci.base.config import NetworkSpec
from napari_sci.base.networks import BlockNetwork, param_count
from napari_sci.core.allocation import allocate, allocation_weights, widest_network
from napari_sci.models.siren import BatchedFunnelSiren


@pytest.mark.parametrize(("ndim", "first", "hidden", "layers"), [(3, 22, 10, 7), (2, 5, 9, 3), (3, 1, 1, 4)])
def test_param_count_matches_the_module(ndim, first, hidden, layers):
    net = BlockNetwork(first, hidden)
    module = BatchedFunnelSiren([net], ndim, NetworkSpec(layers=layers), torch.Generator().manual_seed(0))
    assert module.block_weights(0).size == param_count(ndim, first, hidden, layers)


@pytest.mark.parametrize("share", [161, 500, 2_000, 12_345, 100_000])
def test_widest_network_fits_and_is_tight(share):
    spec = NetworkSpec()
    net = widest_network(share, 3, spec)
    used = net.params(3, spec.layers)
    assert used <= share
    assert share - used < 3 + 1 + net.hidden_width  # one more first-layer unit would not fit
    assert net.first_width >= round(spec.fr * net.hidden_width)


def test_too_small_share_is_a_constant():
    assert widest_network(50, 3, NetworkSpec()).is_constant


def test_allocation_follows_size_over_d_and_spends_the_budget():
    spec = NetworkSpec()
    voxels = [40960, 40960, 327680, 5120]
    d = [0.5, 0.05, 0.05, 0.9]
    total = 60_000
    nets = allocate(voxels, d, [True] * 4, total, 3, spec)
    params = [n.params(3, spec.layers) for n in nets]
    assert sum(params) <= total
    assert sum(params) > total - 50
    assert params[2] > params[1] > params[0]
    weights = allocation_weights(np.array(voxels), np.array(d), "size-over-d")
    assert weights[2] / weights[1] == pytest.approx(8)


def test_small_shares_become_constants_and_budget_is_resplit():
    spec = NetworkSpec()
    voxels = [100_000, 100_000, 100_000, 100]
    nets = allocate(voxels, [0.1, 0.1, 0.1, 0.1], [True] * 4, 3_000, 3, spec)
    assert nets[3].is_constant
    assert sum(n.params(3, spec.layers) for n in nets) > 3_000 - 20


def test_untrainable_blocks_get_nothing():
    nets = allocate([1000, 1000], [0.1, 1.0], [True, False], 900, 3, NetworkSpec())
    assert nets[1].is_constant
    assert not nets[0].is_constant


def test_share_is_capped_at_voxels_even_when_spending_the_remainder():
    spec = NetworkSpec()
    nets = allocate([600, 5_000], [0.01, 0.9], [True, True], 40_000, 3, spec)
    assert nets[0].params(3, spec.layers) <= 600
    assert nets[1].params(3, spec.layers) <= 5_000
