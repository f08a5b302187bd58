"""Parameter allocation: from a byte budget to the widths of every block's network (paper §3.3).

Each block's share of the parameter budget is proportional to |x_i| / D(x_i) — large, busy blocks get
more. A share too small to hold a network of ``min_hidden`` units turns the block into a constant (its
mean) and the budget is split again among the rest, as the authors' code does. Widths are integers, so
after the floor a greedy pass spends what is left one first-layer unit at a time, keeping the total
within one unit of the budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sci.base.config import AllocationRule, NetworkSpec
from napari_sci.base.networks import BlockNetwork, funnel_first_width, param_count


def widest_network(share: float, ndim: int, spec: NetworkSpec) -> BlockNetwork:
    """The largest funnel network with at most ``share`` parameters, or a constant if none fits.

    The hidden width is the largest whose funnel (first = fr × hidden) fits; the first layer is then
    widened with what is left. Of that and the two next narrower hidden widths (widened the same way)
    the one with most parameters wins, which keeps the remainder small even for tiny shares.
    """
    def funnel(h: int) -> int:
        return param_count(ndim, funnel_first_width(h, spec.fr), h, spec.layers)

    if funnel(spec.min_hidden) > share:
        return BlockNetwork()
    low, high = spec.min_hidden, spec.min_hidden
    while funnel(high * 2) <= share:
        high *= 2
    high *= 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if funnel(mid) <= share else (low, mid)
    best = BlockNetwork()
    for hidden in range(low, max(spec.min_hidden, low - 2) - 1, -1):
        first = funnel_first_width(hidden, spec.fr)
        spare = int(share) - param_count(ndim, first, hidden, spec.layers)
        candidate = BlockNetwork(min(first + max(0, spare // (ndim + 1 + hidden)), 65535), min(hidden, 65535))
        if candidate.params(ndim, spec.layers) > best.params(ndim, spec.layers):
            best = candidate
    return best


def allocation_weights(voxels: np.ndarray, concentrations: np.ndarray,
                       rule: AllocationRule) -> np.ndarray:
    """Relative share of each block: |x|/D (the paper), |x|, 1/D or equal (the ablations)."""
    d = np.maximum(np.asarray(concentrations, dtype=np.float64), 1e-12)
    v = np.asarray(voxels, dtype=np.float64)
    if rule == "size-over-d":
        return v / d
    if rule == "size":
        return v
    if rule == "inverse-d":
        return 1.0 / d
    return np.ones_like(v)


def _shares(total: int, weights: np.ndarray, caps: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Split ``total`` in proportion to ``weights`` over ``active`` blocks, none above its cap."""
    shares = np.zeros_like(weights)
    free = active.copy()
    remaining = float(total)
    while free.any() and remaining > 0:
        proposal = remaining * weights * free / weights[free].sum()
        over = free & (proposal > caps)
        if not over.any():
            shares[free] = proposal[free]
            break
        shares[over] = caps[over]
        remaining -= float(caps[over].sum())
        free &= ~over
    return shares


def _spend_remainder(networks: list[BlockNetwork], shares: np.ndarray, caps: np.ndarray, remainder: int,
                     ndim: int, layers: int) -> list[BlockNetwork]:
    """Widen first layers one unit at a time, neediest block first, while the budget and caps allow."""
    networks = list(networks)
    while True:
        best, best_deficit = -1, -np.inf
        for i, net in enumerate(networks):
            cost = ndim + 1 + net.hidden_width
            if (net.is_constant or cost > remainder or net.first_width >= 65535
                    or net.params(ndim, layers) + cost > caps[i]):
                continue
            deficit = (shares[i] - net.params(ndim, layers)) / max(shares[i], 1.0)
            if deficit > best_deficit:
                best, best_deficit = i, deficit
        if best < 0:
            return networks
        net = networks[best]
        remainder -= ndim + 1 + net.hidden_width
        networks[best] = BlockNetwork(net.first_width + 1, net.hidden_width)


def allocate(voxels: Sequence[int], concentrations: Sequence[float], trainable: Sequence[bool],
             total_params: int, ndim: int, spec: NetworkSpec,
             rule: AllocationRule = "size-over-d") -> list[BlockNetwork]:
    """Widths for every block so that the parameters sum to at most ``total_params``.

    Blocks with ``trainable`` False (constant data) always get no network. A block's share is capped
    at its voxel count: a network larger than its data stores nothing more.
    """
    voxels_arr = np.asarray(voxels, dtype=np.float64)
    weights = allocation_weights(voxels_arr, np.asarray(concentrations), rule)
    active = np.asarray(trainable, dtype=bool).copy()
    while True:
        shares = _shares(total_params, weights, voxels_arr, active)
        networks = [widest_network(shares[i], ndim, spec) if active[i] else BlockNetwork()
                    for i in range(len(active))]
        dropped = active & np.array([n.is_constant for n in networks])
        if not dropped.any():
            break
        # Drop only the smallest share first; the others may fit once its share is re-split.
        smallest = int(np.argmin(np.where(dropped, shares, np.inf)))
        active[smallest] = False
    used = sum(n.params(ndim, spec.layers) for n in networks)
    return _spend_remainder(networks, shares, voxels_arr, total_params - used, ndim, spec.layers)
