"""From a trained latent-grid fit to bytes: scale codes, synthesis quantisation, rate trimming.

After training, each tile level gets the Laplace scale code that codes its integer latents in the fewest
bits (exact discrete entropy, searched around the maximum-likelihood scale); the synthesis tensors get
power-of-two steps chosen on the real rate–distortion cost, D + λ·R, as Cool-chic's post-training
network quantisation does; and if the coded file is still over its budget, the latents that cost the
most bits for the least error are set to zero until it fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from napari_sci.base.grid_geometry import GridLayout
from napari_sci.io.latents import encode_tile, scale_code_for, scale_of
from napari_sci.io.weights import TensorCode, encode_payload, quantise, width_code_for
from napari_sci.models.grid_net import Synthesis

STEP_CODES = range(16 * 4, 16 * 15 + 1, 8)  # weight steps 2^-12 … 2^-1 in half-octaves


def laplace_bits_np(symbols: np.ndarray, scale: float) -> float:
    """Ideal code length (bits) of integer symbols under the zero-mean quantised Laplace of ``scale``."""
    d = np.abs(symbols.astype(np.float64))
    upper = 0.5 - d
    low = 0.5 * np.exp((-0.5 - d) / scale)
    high = np.where(upper <= 0, 0.5 * np.exp(np.minimum(upper, 0) / scale),
                    1 - 0.5 * np.exp(-np.maximum(upper, 0) / scale))
    return float(-np.log2(np.maximum(high - low, 1e-300)).sum())


def best_scale_code(symbols: np.ndarray) -> int:
    """The scale code that codes ``symbols`` in the fewest bits (0 when they are all zero)."""
    if not symbols.any():
        return 0
    guess = scale_code_for(max(float(np.mean(np.abs(symbols))), 2.0 ** -6))
    candidates = range(max(1, guess - 24), min(255, guess + 24) + 1, 2)
    best = min(candidates, key=lambda c: laplace_bits_np(symbols, scale_of(c)))
    return min((best - 1, best, best + 1), key=lambda c: laplace_bits_np(symbols, scale_of(max(1, c))))


def tile_payload(latents: Sequence[np.ndarray]) -> bytes:
    """The coded payload of one tile with its best scale codes."""
    return encode_tile(latents, [best_scale_code(g.reshape(-1)) for g in latents])


def synthesis_payload(tensors: Sequence[np.ndarray], codes: Sequence[TensorCode], layout: GridLayout,
                      ) -> bytes:
    return encode_payload(np.concatenate(tensors), layout.tensor_sizes(), codes)


def quantised_tensors(tensors: Sequence[np.ndarray], codes: Sequence[TensorCode]) -> list[np.ndarray]:
    return [(quantise(t, c) * c.step).astype(np.float32) for t, c in zip(tensors, codes)]


def _code(tensor: np.ndarray, step_code: int) -> TensorCode:
    step = TensorCode(step_code, 0).step
    return TensorCode(step_code, width_code_for(np.rint(tensor / step)))


def choose_synthesis_steps(synthesis: Synthesis, distortion: callable, lam_bits: float,  # type: ignore[valid-type]
                           layout: GridLayout) -> list[TensorCode]:
    """Per-tensor steps minimising ``distortion(tensors) + lam_bits · bits``, one tensor at a time.

    ``distortion`` maps the dequantised tensors to the MSE they give; ``lam_bits`` is λ per voxel-bit
    already divided by the voxel count, so the two terms are in the same units.
    """
    tensors = synthesis.flat_tensors()
    codes = [_code(t, 16 * 11) for t in tensors]  # start fine: 2^-5

    def cost(trial: list[TensorCode]) -> float:
        payload = synthesis_payload(tensors, trial, layout)
        return distortion(quantised_tensors(tensors, trial)) + lam_bits * 8 * len(payload)

    best = cost(codes)
    for index in range(len(tensors)):
        for step_code in STEP_CODES:
            trial = list(codes)
            trial[index] = _code(tensors[index], step_code)
            value = cost(trial)
            if value < best:
                best, codes = value, trial
    return codes


def trim_to_budget(latents: list[list[np.ndarray]], raw: list[list[np.ndarray]], budget_bytes: int,
                   fixed_bytes: int) -> tuple[list[bytes], int]:
    """Tile payloads that fit ``budget_bytes`` together with ``fixed_bytes`` of everything else.

    While over budget, zero the non-zero latents whose unrounded value lies nearest to the rounding
    threshold (least error added per bit saved), a growing fraction at a time. Returns the payloads and
    the number of latents zeroed.
    """
    payloads = [tile_payload(t) for t in latents]
    zeroed = 0
    fraction = 0.02
    while fixed_bytes + sum(map(len, payloads)) > budget_bytes:
        over = fixed_bytes + sum(map(len, payloads)) - budget_bytes
        candidates = [(float(abs(r.flat[k])), ti, li, k)
                      for ti, (tile, tile_raw) in enumerate(zip(latents, raw))
                      for li, (g, r) in enumerate(zip(tile, tile_raw))
                      for k in np.flatnonzero(g.reshape(-1))]
        if not candidates:
            break
        candidates.sort()
        count = max(1, min(len(candidates), int(len(candidates) * fraction), over * 2))
        touched = set()
        for _, ti, li, k in candidates[:count]:
            latents[ti][li].reshape(-1)[k] = 0
            touched.add(ti)
        zeroed += count
        for ti in touched:
            payloads[ti] = tile_payload(latents[ti])
        fraction = min(0.5, fraction * 1.5)
    return payloads, zeroed


def raw_latents(pyramids: Sequence[torch.nn.Module]) -> list[list[np.ndarray]]:
    return [[g.detach().cpu().numpy().copy() for g in p.latents] for p in pyramids]


def math_isfinite(value: float) -> bool:
    return math.isfinite(value)
