import itertools

import numpy as np
import pytest
import torch

from napari_sci.base.config import NetworkSpec
from napari_sci.base.networks import BlockNetwork
from napari_sci.models.siren import BatchedFunnelSiren, group_networks

SPEC = NetworkSpec()
NETS = [BlockNetwork(22, 10), BlockNetwork(9, 4), BlockNetwork(30, 13)]


def reference(flat: np.ndarray, net: BlockNetwork, coords: torch.Tensor) -> torch.Tensor:
    """Plain per-layer evaluation straight from the spec's formula, no batching, no padding."""
    dims = [3, net.first_width] + [net.hidden_width] * (SPEC.layers - 2) + [1]
    y, at = coords.double(), 0
    t = torch.from_numpy(flat).double()
    for k, (i, o) in enumerate(itertools.pairwise(dims)):
        w = t[at: at + i * o].reshape(o, i)
        at += i * o
        b = t[at: at + o]
        at += o
        y = y @ w.T + b
        if k < len(dims) - 2:
            y = torch.sin((SPEC.w0 if k == 0 else SPEC.w0_hidden) * y)
    return y[:, 0]


def test_batched_padded_networks_equal_each_network_alone():
    module = BatchedFunnelSiren(NETS, 3, SPEC, torch.Generator().manual_seed(3))
    coords = torch.rand(3, 50, 3) * 2 - 1
    out = module(coords)
    for j, net in enumerate(NETS):
        expected = reference(module.block_weights(j), net, coords[j])
        torch.testing.assert_close(out[j].double(), expected, atol=1e-4, rtol=1e-4)


def test_padding_receives_no_gradient():
    module = BatchedFunnelSiren(NETS, 3, SPEC, torch.Generator().manual_seed(0))
    module(torch.rand(3, 20, 3)).square().sum().backward()
    for k, w in enumerate(module.weights):
        mask, _ = module.masks(k)
        assert torch.all(w.grad[mask == 0] == 0)


def test_weights_round_trip_through_flat_vectors():
    module = BatchedFunnelSiren(NETS, 3, SPEC, torch.Generator().manual_seed(1))
    flats = [module.block_weights(j) for j in range(3)]
    rebuilt = BatchedFunnelSiren.from_weights(NETS, flats, 3, SPEC)
    coords = torch.rand(3, 10, 3)
    torch.testing.assert_close(module(coords), rebuilt(coords))
    single = BatchedFunnelSiren.from_weights([NETS[1]], [flats[1]], 3, SPEC)
    torch.testing.assert_close(single(coords[1:2])[0], module(coords)[1], atol=1e-5, rtol=1e-5)


def test_initialisation_does_not_depend_on_batching():
    alone = BatchedFunnelSiren(NETS[:1], 3, SPEC, torch.Generator().manual_seed(5)).block_weights(0)
    together = BatchedFunnelSiren(NETS, 3, SPEC, torch.Generator().manual_seed(5)).block_weights(0)
    np.testing.assert_array_equal(alone, together)


@pytest.mark.parametrize("waste", [0.0, 0.3, 0.9])
def test_groups_cover_every_network_once_and_bound_padding(waste):
    nets = [BlockNetwork(2 * h + 1, h) for h in (4, 5, 8, 8, 12, 20, 21, 40)] + [BlockNetwork()]
    groups = group_networks(nets, 3, 7, max_waste=waste)
    members = sorted(i for g in groups for i in g)
    assert members == list(range(8))  # the constant one is not trained
    for g in groups:
        widest = BlockNetwork(max(nets[i].first_width for i in g), max(nets[i].hidden_width for i in g))
        useful = sum(nets[i].params(3, 7) for i in g)
        assert useful >= (1 - waste) * widest.params(3, 7) * len(g) - 1e-9
    if waste == 0.0:
        assert len(groups) == 7  # only the two identical networks share a group
