"""Choosing quantisation steps for every tensor so the coded weights fill the byte budget (format v2).

Quantising a tensor with step Δ adds about Δ²/12 · G of squared error per voxel, where G is the sum over
its elements of the mean squared derivative of the network's output; coding it costs about
n·log2(σ/Δ) bits. Minimising error + λ·rate gives equal slopes: Δ = κ·√(n / (w·G)), with w the block's
share of the volume's squared-error scale. κ is bisected on the *exact* coded size, so the file lands
just under its budget.

G is estimated without per-sample gradients: for random signs s, E[(∂Σᵢ sᵢ·outᵢ/∂θ)²] = Σᵢ (∂outᵢ/∂θ)².
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_sci.base.config import NetworkSpec
from napari_sci.base.networks import BlockNetwork, layer_dims
from napari_sci.io.weights import (
    SYMBOL_LIMIT,
    TensorCode,
    encode_payload,
    quantise,
    split_tensors,
    step_code_for,
    tensor_sizes,
    width_code_for,
)
from napari_sci.models.siren import BatchedFunnelSiren


def network_tensor_sizes(ndim: int, net: BlockNetwork, layers: int) -> list[int]:
    return tensor_sizes(layer_dims(ndim, net, layers))


def tensor_sensitivities(weights: np.ndarray, net: BlockNetwork, ndim: int, spec: NetworkSpec,
                         generator: torch.Generator, samples: int = 4096, repeats: int = 4) -> np.ndarray:
    """G of each tensor (file order) of one network, from random-sign backward passes."""
    module = BatchedFunnelSiren.from_weights([net], [weights], ndim, spec)
    totals = np.zeros(2 * spec.layers)
    for _ in range(repeats):
        coords = torch.rand(1, samples, ndim, generator=generator) * 2 - 1
        signs = torch.randint(0, 2, (1, samples), generator=generator).float() * 2 - 1
        module.zero_grad(set_to_none=True)
        (module(coords) * signs).sum().backward()
        grads = [p.grad for pair in zip(module.weights, module.biases) for p in pair]
        totals += np.array([float(g.square().sum()) for g in grads]) / samples
    return totals / repeats


def _codes(weights: np.ndarray, sizes: Sequence[int], scales: np.ndarray,
           kappa: float) -> list[TensorCode]:
    codes = []
    for values, scale in zip(split_tensors(weights, sizes), scales):
        floor = float(np.abs(values).max()) / SYMBOL_LIMIT if values.size else 0.0
        step_code = step_code_for(max(kappa * scale, floor, 2.0**-16))
        while TensorCode(step_code, 0).step < floor and step_code < 255:
            step_code += 1
        probe = TensorCode(step_code, 0)
        codes.append(TensorCode(step_code, width_code_for(quantise(values, probe))))
    return codes


def step_scales(sizes: Sequence[int], sensitivity: np.ndarray, block_weight: float) -> np.ndarray:
    """√(n / (w·G)) per tensor: the step each tensor gets per unit of κ."""
    g = np.maximum(np.asarray(sensitivity, dtype=np.float64) * block_weight, 1e-30)
    return np.sqrt(np.asarray(sizes, dtype=np.float64) / g)


def fit_codes_to_budget(weights: Sequence[np.ndarray], sizes: Sequence[Sequence[int]],
                        scales: Sequence[np.ndarray], budget: int,
                        checkpoint: Callable[[], None] | None = None,
                        ) -> tuple[list[list[TensorCode]], list[bytes]]:
    """The finest common κ whose coded payloads total at most ``budget`` bytes.

    Returns the codes and payloads per network. Bisection on log κ over the exact coded size;
    ``checkpoint`` runs before each coding pass (seconds each on a large volume) so a caller can
    cancel in between by raising.
    """
    Coded = tuple[list[list[TensorCode]], list[bytes]]

    def payloads_for(kappa: float) -> Coded:
        if checkpoint is not None:
            checkpoint()
        codes = [_codes(w, s, c, kappa) for w, s, c in zip(weights, sizes, scales)]
        return codes, [encode_payload(w, s, k) for w, s, k in zip(weights, sizes, codes)]

    low, high = -60.0, 60.0  # log2 κ; small κ = fine steps = many bytes
    fitting = payloads_for(2.0**high)  # the coding at ``high``, which always fits from here on
    if sum(len(p) for p in fitting[1]) > budget:
        return fitting  # the coarsest coding; the caller checks the budget
    for _ in range(40):
        mid = (low + high) / 2
        tried = payloads_for(2.0**mid)
        if sum(len(p) for p in tried[1]) <= budget:
            high, fitting = mid, tried
        else:
            low = mid
        if high - low < 1 / 64:
            break
    return fitting


def block_error_weight(voxels: int, n_total: int, lo: float, hi: float) -> float:
    """How much a unit of normalised output error in this block weighs in the volume's MSE."""
    return voxels / n_total * ((hi - lo) / 2.0) ** 2 if hi > lo else 0.0

