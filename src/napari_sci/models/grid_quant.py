"""From a trained latent-grid fit to bytes: scale codes, synthesis quantisation, rate trimming.

After training, each tile level gets the Laplace scale code that codes its integer latents in the fewest
bits (exact discrete entropy, searched around the maximum-likelihood scale); the synthesis tensors get
power-of-two steps chosen on the real rate–distortion cost, D + λ·R, as Cool-chic's post-training
network quantisation does; and if the coded file is still over its budget, the latents that cost the
most bits for the least error are set to zero until it fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sci.base.grid_geometry import GridLayout
from napari_sci.io import latent_context
from napari_sci.io.laplace_codes import laplace_bits_each
from napari_sci.io.latent_context import ContextModel
from napari_sci.io.latents import LATENT_LIMIT, encode_tile, scale_code_for, scale_of
from napari_sci.io.weights import TensorCode, dequantised, encode_payload, split_tensors, width_code_for
from napari_sci.models.grid_net import Synthesis

STEP_CODES = range(16 * 4, 16 * 15 + 1, 8)  # weight steps 2^-12 … 2^-1 in half-octaves


def laplace_bits_np(symbols: np.ndarray, scale: float) -> float:
    """Ideal code length (bits) of integer symbols under the zero-mean quantised Laplace of ``scale``."""
    return float(laplace_bits_each(symbols, scale).sum())


def _histogram_bits(magnitudes: np.ndarray, counts: np.ndarray, scale: float) -> float:
    return float(np.dot(counts, laplace_bits_each(magnitudes, scale)))


def best_scale_code(symbols: np.ndarray) -> int:
    """The scale code that codes ``symbols`` in the fewest bits (0 when they are all zero).

    Scored on the histogram of |symbol| (the model is symmetric), so a level of millions of latents
    costs a few hundred evaluations, not millions.
    """
    if not symbols.any():
        return 0
    magnitudes, counts = np.unique(np.abs(symbols.astype(np.int64)), return_counts=True)
    guess = scale_code_for(max(float(np.mean(np.abs(symbols))), 2.0 ** -6))

    def cost(code: int) -> float:
        return _histogram_bits(magnitudes, counts, scale_of(min(255, max(1, code))))

    best = min(range(max(1, guess - 24), min(255, guess + 24) + 1, 2), key=cost)
    return max(1, min(255, min((best - 1, best, best + 1), key=cost)))


def tile_payload(latents: Sequence[np.ndarray], context: ContextModel | None = None) -> bytes:
    """The coded payload of one tile with its best scale codes (model 3's with ``context``)."""
    if context is not None:
        return latent_context.encode_tile(latents, context)
    return encode_tile(latents, [best_scale_code(g.reshape(-1)) for g in latents])


def synthesis_payload(tensors: Sequence[np.ndarray], codes: Sequence[TensorCode], layout: GridLayout,
                      ) -> bytes:
    return encode_payload(np.concatenate(tensors), layout.tensor_sizes(), codes)


def quantised_tensors(tensors: Sequence[np.ndarray], codes: Sequence[TensorCode]) -> list[np.ndarray]:
    """What a decoder will see for each tensor under ``codes`` (format 2's dequantisation)."""
    sizes = [t.size for t in tensors]
    return split_tensors(dequantised(np.concatenate(tensors), sizes, codes), sizes)


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


class _FlatLatents:
    """Every tile's integer latents and their unrounded values as two flat arrays (tile after tile,
    level after level), for trimming and filling: candidates are chosen and changed on the flat
    arrays, then only the tiles they fall in are re-coded."""

    def __init__(self, latents: list[list[np.ndarray]], raw: list[list[np.ndarray]],
                 context: ContextModel | None = None) -> None:
        self.latents = latents
        self.context = context
        grids = [g for tile in latents for g in tile]
        self.ends = np.cumsum([g.size for g in grids], dtype=np.int64)
        self.tile_ends = self.ends[np.cumsum([len(tile) for tile in latents]) - 1] if grids else self.ends
        self.stored = (np.concatenate([g.reshape(-1) for g in grids]) if grids
                       else np.zeros(0)).astype(np.int32)
        self.unrounded = (np.concatenate([g.reshape(-1) for tile in raw for g in tile]) if grids
                          else np.zeros(0)).astype(np.float32)

    def coded(self, trial: np.ndarray, changed: np.ndarray, payloads: list[bytes],
              ) -> tuple[list[list[np.ndarray]], list[bytes]]:
        """``trial`` (a changed copy of ``stored``) shaped as the tiles, and their payloads: the
        tiles holding ``changed`` re-coded, the others' ``payloads`` kept."""
        parts = iter(np.split(trial, self.ends[:-1]))
        shaped = [[next(parts).reshape(g.shape) for g in tile] for tile in self.latents]
        touched = set(np.searchsorted(self.tile_ends, changed, side="right").tolist())
        return shaped, [tile_payload(t, self.context) if i in touched else payloads[i]
                        for i, t in enumerate(shaped)]

    def keep(self, shaped: list[list[np.ndarray]]) -> None:
        """Write ``shaped`` into the caller's latent arrays (changed in place)."""
        for tile, grids in zip(self.latents, shaped):
            for i, g in enumerate(grids):
                tile[i][...] = g


def trim_to_budget(latents: list[list[np.ndarray]], raw: list[list[np.ndarray]], budget_bytes: int,
                   fixed_bytes: int, payloads: list[bytes] | None = None,
                   context: ContextModel | None = None) -> tuple[list[bytes], int]:
    """Tile payloads that fit ``budget_bytes`` together with ``fixed_bytes`` of everything else.

    While over budget, zero the non-zero latents whose unrounded value lies nearest to the rounding
    threshold (least error added per bit saved), a growing share of the rest at a time. ``latents``
    are changed in place; returns the payloads and the number of latents zeroed.
    """
    payloads = list(payloads) if payloads is not None else [tile_payload(t, context) for t in latents]
    if fixed_bytes + sum(map(len, payloads)) <= budget_bytes:
        return payloads, 0
    flat = _FlatLatents(latents, raw, context)
    candidates = np.flatnonzero(flat.stored)
    candidates = candidates[np.argsort(np.abs(flat.unrounded[candidates]), kind="stable")]
    original, shaped, zeroed, fraction = payloads, latents, 0, 0.02
    while (over := fixed_bytes + sum(map(len, payloads)) - budget_bytes) > 0 and zeroed < candidates.size:
        left = candidates.size - zeroed
        zeroed += max(1, min(left, int(left * fraction), over * 2))
        trial = flat.stored.copy()
        trial[candidates[:zeroed]] = 0
        shaped, payloads = flat.coded(trial, candidates[:zeroed], original)
        fraction = min(0.5, fraction * 1.5)
    flat.keep(shaped)
    return payloads, zeroed


FILL = 0.99  # the coded tiles fill at least this share of their room when the budget allows (≤ 3 % under)
FILL_REACH = 0.25  # only latents this close under the rounding threshold are rounded up


def fill_to_budget(latents: list[list[np.ndarray]], raw: list[list[np.ndarray]], budget_bytes: int,
                   fixed_bytes: int, payloads: list[bytes], fill: float = FILL,
                   context: ContextModel | None = None) -> tuple[list[bytes], int]:
    """Spend what the latent step Δ left unused: round up, in magnitude, the latents that fell nearest
    under the rounding threshold, as many as fit ``budget_bytes``.

    The coded size is not continuous in Δ: straight-through training piles latents up just under ±½,
    and the first step finer than 1 rounds them all up at once (+9 % on the CT), so Δ alone can leave
    5–8 % of a budget unused. Those latents sit where distortion and rate balanced at the training
    slope; rounding them up buys distortion at about that slope. The count is bisected on the real
    coded size. ``latents`` are changed in place; returns the payloads and the count rounded up.
    """
    room = budget_bytes - fixed_bytes
    if sum(map(len, payloads)) >= fill * room:
        return payloads, 0
    flat = _FlatLatents(latents, raw, context)
    stored, magnitude = flat.stored, np.abs(flat.unrounded)
    # rounded down in magnitude by at most ¼ (the pile-up sits at 0.49; the rest would cost more
    # error than they buy), with room to grow within the symbol range
    deficit = np.abs(stored) + 0.5 - magnitude
    candidates = np.flatnonzero((deficit > 0) & (deficit <= FILL_REACH) & (np.abs(stored) < LATENT_LIMIT))
    if candidates.size == 0:
        return payloads, 0
    candidates = candidates[np.argsort(deficit[candidates], kind="stable")]
    step_up = np.where(flat.unrounded[candidates] > 0, 1, -1).astype(np.int32)

    def coded(count: int) -> tuple[list[list[np.ndarray]], list[bytes]]:
        trial = stored.copy()
        trial[candidates[:count]] += step_up[:count]
        return flat.coded(trial, candidates[:count], payloads)

    low, high = 0, candidates.size + 1  # low always fits; high: the first count known (or taken) over
    best: tuple[int, list[list[np.ndarray]], list[bytes]] = (0, latents, payloads)
    while high - low > 1:
        middle = (low + high) // 2
        trial, trial_payloads = coded(middle)
        trial_size = sum(map(len, trial_payloads))
        if trial_size <= room:
            low, best = middle, (middle, trial, trial_payloads)
            if trial_size >= fill * room:
                break
        else:
            high = middle
    count, chosen, chosen_payloads = best
    flat.keep(chosen)
    return chosen_payloads, count


def latents_at(raw: Sequence[Sequence[np.ndarray]], step: float) -> list[list[np.ndarray]]:
    """The integer latents a decoder multiplies by ``step`` to approximate the trained ones."""
    return [[np.clip(np.rint(g / step), -LATENT_LIMIT, LATENT_LIMIT).astype(np.int32) for g in tile]
            for tile in raw]


def fit_step_to_budget(raw: Sequence[Sequence[np.ndarray]], budget_bytes: int, fixed_bytes: int,
                       fill: float = 0.97, context: ContextModel | None = None,
                       ) -> tuple[float, list[list[np.ndarray]], list[bytes]]:
    """The latent step Δ (a power of 2^(1/64) in [1/4, 4]) whose coded tiles come closest under budget.

    Training leaves continuous latents near the rate asked for; re-quantising them with a step near 1
    moves the size either way. Bisection on log Δ (size falls as Δ grows), stopping once the tiles
    fill ``fill`` of what is left after ``fixed_bytes``.
    """
    room = budget_bytes - fixed_bytes

    def coded(step: float) -> tuple[list[list[np.ndarray]], list[bytes]]:
        latents = latents_at(raw, step)
        return latents, [tile_payload(t, context) for t in latents]

    low, high = -128, 128  # log2 Δ in 1/64 octaves
    best: tuple[float, list[list[np.ndarray]], list[bytes]] | None = None
    for _ in range(10):
        middle = (low + high) // 2
        step = 2.0 ** (middle / 64)
        latents, payloads = coded(step)
        size = sum(map(len, payloads))
        if size <= room:
            best = (step, latents, payloads)
            if size >= fill * room:
                break
            high = middle
        else:
            low = middle
        if high - low <= 1:
            break
    if best is None:
        step = 2.0 ** (high / 64)
        latents, payloads = coded(step)
        best = (step, latents, payloads)
    return best
