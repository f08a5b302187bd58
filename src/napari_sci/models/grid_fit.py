"""Rate–distortion training of latent-grid tiles to a byte budget (one λ for all tiles).

Loss = MSE (over the whole volume, values normalised to the data range) + λ · bits per voxel. Every step
evaluates every tile in full (Cool-chic's full-signal steps). The schedule follows C3 / Cool-chic:
Adam at ``lr`` with cosine decay while the latents carry uniform noise, then a straight-through rounding
phase at a small learning rate. λ is not searched by refitting: it is steered during the fit toward
the rate target by a multiplicative controller on the measured (hard-rounded) rate — the λ search done
warm, in one run — so the size lands on the target while the latents adapt to it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_sci.base.config import GridConfig
from napari_sci.base.grid_geometry import GridLayout
from napari_sci.io.latents import LATENT_LIMIT
from napari_sci.models.grid import axis_matrix, interpolate_box
from napari_sci.models.grid_latents import PackedLatents, drawn_bits, quantise
from napari_sci.models.grid_net import Synthesis, laplace_bits
from napari_sci.models.grid_quant import tile_payload

CONTROL_EVERY = 10       # steps between λ updates
CONTROL_GAIN = 0.5       # log-λ change per update at a rate error of e (×e, clipped at ±1)
# The controller aims a little *over* the latents' room: the latent step Δ that fits the file to its
# budget then lands just above 1, where the coded size falls smoothly with Δ. Below 1 it jumps: the
# straight-through phase piles latents up just under ±0.5 (a latent rounding to ±1 is pushed toward 0
# until it rounds to 0), and a 1 % finer step flips them all: on the CT, +9 % of size from Δ = 1 to
# 2^(−1/64). Aimed under (0.985), a fit that ended a few percent short could not be filled: the MRI
# and the CT at 300 s landed 7.8 % and 5.2 % under their budgets.
RATE_MARGIN = 1.02
CALIBRATE_EVERY = 100    # steps between measurements of the real coded size against the estimate
# how far the coded size may stand from the estimate: the Laplace of mean |latent| fits mostly-zero
# levels poorly, and the context model codes them far below it (the neuron crop: a fifth)
CALIBRATION_RANGE = (1 / 16, 16.0)
PACE_WINDOW = 100        # steps over which a time-limited fit measures its pace (a calibration each)
# λ stays within these factors of where it started (no wind-up when the rate lags). Downward the room
# is wider: a sparse volume under the context model codes so cheaply that λ at ÷16 left the neuron
# crop's file at 44 % of its 0.1-BPV budget (the latent step Δ at its bound ¼ too).
LAMBDA_SPAN = (1 / 1024, 16.0)


@dataclass
class GridFitState:
    """What a fit leaves: the trained modules, the last λ and how the run went."""

    latents: PackedLatents
    synthesis: Synthesis
    lam: float
    steps: int
    elapsed: float
    mse: float
    bits: float
    reason: str


@dataclass(frozen=True)
class GridStep:
    """Progress of one report: step, loss, MSE of the hard-rounded model (on a sample, values
    normalised to [0, 1]) and its estimated rate in bits."""

    step: int
    total: int
    loss: float
    mse: float
    bits: float
    lam: float
    lr: float
    elapsed: float


FINAL_LR = 1e-4  # the straight-through phase's learning rate (Cool-chic's last phase)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch's defaults, which the level-0 lazy Adam shares
FINE_SCALE_EVERY = 10  # steps between re-measures of the level-0 scales (a pass over every voxel)
FINE_LR_SCALE = 1.0    # the lazy level-0 Adam's learning rate over the latents' own
CONTEXT_EVERY = 25     # steps between re-measures of the latents' contexts (a pass over every latent)
CONTEXT_LR_SCALE = 20.0  # the context model's learning rate over the network's (its unit: 1/16 octave)


class Schedule:
    """Learning rate and latent mode by step, for a total that a time-limited fit re-estimates as it
    goes: a cosine decay from ``grid_lr`` with noisy latents, then straight-through rounding at
    ``FINAL_LR`` for the last ``ste_fraction`` of the steps, at most ``ste_max_steps``. Once the
    rounding phase has started it stays: near the switch the estimate's jitter would otherwise flip
    the latents between noise and rounding."""

    def __init__(self, settings: GridConfig) -> None:
        self.settings = settings
        self.rounding = False

    def __call__(self, step: int, total: int) -> tuple[float, str]:
        settings = self.settings
        noise_steps = max(1, round(total * (1 - settings.ste_fraction)), total - settings.ste_max_steps)
        self.rounding = self.rounding or step >= noise_steps
        if self.rounding:
            return FINAL_LR, "ste"
        cosine = 0.5 * (1 + math.cos(math.pi * step / noise_steps))
        return FINAL_LR + (settings.grid_lr - FINAL_LR) * cosine, "noise"


EVAL_CHUNK = 1 << 22  # voxels per synthesis call when whole tiles are evaluated (bounds activations)
REPORT_SAMPLES = 1 << 15  # voxels of a progress report's MSE estimate (eager: 0.25 s at 2^17)


class GridTrainer:
    """Holds the packed latents, the targets and the optimiser; ``step`` runs one training step."""

    def __init__(self, volume: np.ndarray, tiles: Sequence[tuple[slice, ...]], layout: GridLayout,
                 settings: GridConfig, seed: int, device: torch.device) -> None:
        self.samples = settings.grid_samples
        self.dense = settings.grid_samples == 0  # every voxel every step (Cool-chic's full-signal step)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self.layout = layout
        self.settings = settings
        self.n_voxels = int(volume.size)
        targets = [np.ascontiguousarray(volume[s], dtype=np.float32).reshape(-1) for s in tiles]
        self.target = torch.from_numpy(np.concatenate(targets) if targets else np.zeros(0, np.float32)
                                       ).to(device)
        self.finest_level = (settings.finest_level if settings.finest_level is not None
                             else choose_finest_level(volume))
        self.latents = PackedLatents([tuple(t.stop - t.start for t in s) for s in tiles], layout,
                                     self.finest_level, context=settings.context_coded,
                                     mean=settings.predicts_means).to(device)
        self.n_trained = self.latents.n_voxels
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.synthesis = Synthesis(layout).to(device)
            with torch.no_grad():  # untrained levels feed zeros: their weights stay 0 and code cheaply
                self.synthesis.linears[0].weight[:, :self.latents.first] = 0
        # the full-resolution level, when trained on sampled steps, is updated where the samples
        # touch it (``fine``, a lazy Adam); the coarser levels, each latent of which many samples
        # touch, by Adam over all of them (``coarse``): both views of the one latent vector
        self.n_fine = self.latents.fine_size if (
            settings.sparse_fine and not self.dense and self.latents.numel() > self.latents.fine_size) else 0
        storage = self.latents.flat.detach()
        self.fine = storage[:self.n_fine]
        self.coarse = nn.Parameter(storage[self.n_fine:]) if self.n_fine else self.latents.flat
        self.fine_moments = torch.zeros((3, self.n_fine), device=device)  # m, v, updates per latent
        self.fine_scale = torch.ones(len(self.latents.shapes), device=device)  # set by the first step
        self.steps_taken = 0
        groups = [{"params": [self.coarse], "scale": settings.latent_lr_scale},
                  {"params": list(self.synthesis.parameters()), "scale": 1.0}]
        if self.latents.context:
            groups.append({"params": [self.latents.entropy], "scale": CONTEXT_LR_SCALE})
        self.optimiser = torch.optim.Adam(groups, lr=settings.grid_lr)
        self._compiled: Callable[..., Any] | None = None
        self.compile_error: str | None = None

    def sample_count(self) -> int:
        """Voxels a sampled step draws: ``samples`` spread over the whole
        volume, of which the constant tiles (not trained) take their share."""
        return max(1, round(self.samples * self.n_trained / self.n_voxels))

    def enable_compile(self) -> None:
        """Run the sampled step's tensor work through ``torch.compile`` (one fused graph for the
        gathers, the synthesis, the loss and their backward; about 1.9× on the 2-core CPU)."""
        if self._compiled is None:
            if self.dense:  # one graph for any chunk length (tiles differ): no recompile per tile
                self._compiled = torch.compile(self._chunk_sse, dynamic=True)
            elif self.n_fine:
                self._compiled = torch.compile(self._sparse_terms, dynamic=False)
            else:
                self._compiled = torch.compile(self._sampled_terms, dynamic=False)

    def _chunk_sse(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error of the synthesis on (levels, voxels) features: the dense step's compiled
        part (bias, ReLU and the loss fused into the matrix products' passes)."""
        return torch.sum((self.synthesis.forward_channels_first(features) - target) ** 2)

    def _sampled_terms(self, flat: torch.Tensor, tile: torch.Tensor, voxel: torch.Tensor,
                       target: torch.Tensor, rate_scale: torch.Tensor,
                       rate_centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.synthesis(self.latents.features_at(flat, tile, voxel))
        sse = torch.mean((out - target) ** 2) * self.n_trained
        return sse, drawn_bits(flat - rate_centre, rate_scale)

    def _sparse_terms(self, coarse: torch.Tensor, fine: torch.Tensor, tile: torch.Tensor,
                      voxel: torch.Tensor, target: torch.Tensor, rate_scale: torch.Tensor,
                      fine_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The sampled step with the voxels' own level-0 latents ``fine`` passed in: squared error
        (scaled to the volume), the coarser levels' bits and the drawn level-0 latents' bits."""
        out = self.synthesis(self.latents.features_at(coarse, tile, voxel, fine=fine))
        sse = torch.mean((out - target) ** 2) * self.n_trained
        return sse, drawn_bits(coarse, rate_scale), laplace_bits(fine, fine_scale).sum()

    def _terms(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dense or self.n_fine:  # the compiled function is the dense chunk or the sparse terms
            return self._sampled_terms(*args)
        return self._run_compiled(self._sampled_terms, *args)

    def _run_compiled(self, eager: Callable[..., Any], *args: torch.Tensor) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(*args)
            except Exception as error:  # e.g. no C++ compiler for inductor: the eager step is the same
                self._compiled = None
                self.compile_error = f"{type(error).__name__}: {error}"
        return eager(*args)

    def evaluate(self, mode: str, sampled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(MSE over the volume, total estimated bits) with latents in ``mode``.

        ``sampled``: the MSE is estimated on random voxels drawn uniformly over the trained tiles
        (an unbiased estimate); the rate is always that of every latent.
        """
        flat = self.latents.quantised(mode, self.generator)
        sampled = sampled and self.sample_count() < self.n_trained
        if not self.n_trained:
            zero = torch.zeros((), device=self.device)
            return zero, zero
        if sampled:
            sample = self.latents.sample(self.sample_count(), self.generator)
            centre = self.latents.rate_centres()
            sse, bits = self._terms(flat, sample.tile, sample.voxel, self.target[sample.flat],
                                    self.latents.rate_terms(flat, centre), centre)
            return sse / self.n_voxels, bits
        sse = sum((self._tile_sse(flat, tile) for tile in range(len(self.latents.shapes))),
                  torch.zeros((), device=self.device))
        return sse / self.n_voxels, self.latents.bits(flat)

    def _tile_sse(self, flat: torch.Tensor, tile: int, backward_scale: float | None = None) -> torch.Tensor:
        """Squared error summed over every voxel of one tile (levels upsampled whole, the synthesis
        run in chunks of ``EVAL_CHUNK`` voxels).

        With ``backward_scale`` the gradients of ``backward_scale · sse`` are accumulated here, chunk
        by chunk, so the memory a step holds is one tile's features and one chunk's activations.
        """
        start, stop = int(self.latents.tile_start[tile]), int(self.latents.tile_start[tile + 1])
        features = self.latents.dense_features(flat, tile)
        training = backward_scale is not None
        grad = torch.empty_like(features) if training else None
        sse = torch.zeros((), device=self.device)
        for first in range(0, stop - start, EVAL_CHUNK):
            last = min(first + EVAL_CHUNK, stop - start)
            chunk = features[:, first:last]
            if training:  # a leaf per chunk: its gradient lands in place, no full-size zeros a chunk
                chunk = chunk.detach().requires_grad_()
            target = self.target[start + first:start + last]
            part = (self._run_compiled(self._chunk_sse, chunk, target) if training
                    else self._chunk_sse(chunk, target))
            if training:
                (part * backward_scale).backward()
                grad[:, first:last] = chunk.grad
                part = part.detach()
            sse = sse + part
        if training:
            features.backward(grad)
        return sse

    def step(self, lr: float, mode: str, lam: float) -> torch.Tensor:
        """One optimiser step; the loss comes back as a tensor (read it only when reporting: reading
        it every step would wait for the device)."""
        for group in self.optimiser.param_groups:
            group["lr"] = lr * group["scale"]
        self.optimiser.zero_grad(set_to_none=True)
        if self.latents.context and self.steps_taken % CONTEXT_EVERY == 0:
            self.latents.refresh_contexts()
        if self.dense:
            loss = self._dense_backward(mode, lam)
        elif self.n_fine:
            loss, index, fine_grad = self._sparse_backward(mode, lam)
        else:
            mse, bits = self.evaluate(mode, sampled=True)
            loss = mse + lam * bits / self.n_voxels
            loss.backward()
        self.optimiser.step()
        if self.n_fine:
            with torch.no_grad():
                self.coarse.clamp_(-LATENT_LIMIT, LATENT_LIMIT)
                self._fine_adam(index, fine_grad, lr * self.settings.latent_lr_scale * FINE_LR_SCALE)
        else:
            self.latents.clamp_()
        self.steps_taken += 1
        return loss.detach()

    def _sparse_backward(self, mode: str, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A sampled step's loss and gradients, whose level-0 part touches only the drawn voxels'
        latents; returns the loss, those latents' indices and their gradients (one per draw).

        Each drawn voxel pays its own level-0 latent's rate, weighted up by the share drawn, so that
        a latent's expected gradient is the full step's; its distortion and rate gradients arrive
        together, and only those latents are moved (:meth:`_fine_adam`). The full step spent noise,
        rate and Adam on every level-0 latent every step (7/8 of the latents) though each drawn
        voxel touches one.
        """
        if self.steps_taken % FINE_SCALE_EVERY == 0:
            self.fine_scale = self.latents.fine_scales(quantise(self.fine, mode, self.generator))
        sample = self.latents.sample(self.sample_count(), self.generator)
        own = self.fine[sample.flat].requires_grad_()
        fine = quantise(own, mode, self.generator)
        coarse = quantise(self.coarse, mode, self.generator)
        args = (coarse, fine, sample.tile, sample.voxel, self.target[sample.flat],
                self.latents.coarse_rate_terms(coarse), self.fine_scale[sample.tile])
        sse, coarse_bits, fine_bits = self._run_compiled(self._sparse_terms, *args)
        bits = coarse_bits + fine_bits * (self.n_fine / sample.flat.numel())
        loss = (sse + lam * bits) / self.n_voxels
        loss.backward()
        return loss, sample.flat, own.grad

    def _fine_adam(self, index: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        """Adam on the level-0 latents at ``index`` (sorted, repeats summed), each with its own count
        of updates for the bias correction; the others keep their values and moments."""
        unique, inverse = torch.unique_consecutive(index, return_inverse=True)
        g = grad.new_zeros(unique.numel()).index_add_(0, inverse, grad)
        (beta1, beta2), eps = ADAM_BETAS, ADAM_EPS
        m, v, count = self.fine_moments[:, unique]
        m = m * beta1 + (1 - beta1) * g
        v = v * beta2 + (1 - beta2) * g * g
        count = count + 1
        self.fine_moments[:, unique] = torch.stack((m, v, count))
        move = (m / (1 - beta1 ** count)) / ((v / (1 - beta2 ** count)).sqrt() + eps)
        self.fine[unique] = (self.fine[unique] - lr * move).clamp(-LATENT_LIMIT, LATENT_LIMIT)

    def _dense_backward(self, mode: str, lam: float) -> torch.Tensor:
        """Every voxel's error and every latent's rate, back-propagated tile by tile; the loss.

        The quantised latents are cut from the graph once, gradients gathered on that copy across
        the tiles, then passed through the quantisation (noise or straight-through) to the parameter.
        """
        quantised = self.latents.quantised(mode, self.generator)
        leaf = quantised.detach().requires_grad_()
        sse = torch.zeros((), device=self.device)
        for tile in range(len(self.latents.shapes)):
            sse = sse + self._tile_sse(leaf, tile, backward_scale=1.0 / self.n_voxels)
        rate = lam * self.latents.bits(leaf) / self.n_voxels
        rate.backward()
        quantised.backward(leaf.grad)
        return sse / self.n_voxels + rate.detach()

    @torch.no_grad()
    def coded_bits(self) -> float:
        """Bits the rounded latents take once coded as the file codes them (each level's best scale,
        ANS): what the Laplace estimate of :meth:`hard_bits` approximates, often well above it (the
        mean-|latent| scale fits mostly-zero levels poorly: on the neuron crop the file held a third
        of the budget when the estimate said it was full)."""
        tiles = [[np.rint(g).astype(np.int32) for g in tile] for tile in self.latents.tile_arrays()]
        context = self.latents.context_model() if self.latents.context else None
        return 8.0 * sum(len(tile_payload(t, context)) for t in tiles)

    @torch.no_grad()
    def hard_bits(self) -> float:
        """Estimated bits of the rounded latents: what the controller steers."""
        if not self.n_trained:
            return 0.0
        return self.latents.rounded_bits()

    @torch.no_grad()
    def sampled_mse(self) -> float:
        """MSE of the hard-rounded model on random voxels (an unbiased estimate over the volume),
        rounding only the latents those voxels read: a progress report's figure."""
        if not self.n_trained:
            return 0.0
        count = max(1, round(REPORT_SAMPLES * self.n_trained / self.n_voxels))
        sample = self.latents.sample(count, self.generator)
        if self.n_fine:
            features = self.latents.features_at(torch.round(self.coarse), sample.tile, sample.voxel,
                                                fine=torch.round(self.fine[sample.flat]))
        else:
            features = self.latents.features(torch.round(self.latents.flat.detach()), sample)
        error = self.synthesis(features) - self.target[sample.flat]
        return float(torch.mean(error ** 2)) * self.n_trained / self.n_voxels


def starting_lambda(settings: GridConfig, bits_per_voxel: float) -> float:
    """λ to start from: ``initial_lambda`` at 0.25 BPV, scaled by 0.25 / BPV.

    At the optimum λ is −dMSE/dR, which grows as the rate falls; the inverse-rate scaling keeps the
    start within a few controller updates of where λ ends on the development volumes.
    """
    return settings.initial_lambda * (0.25 / max(bits_per_voxel, 1e-3))


# The full-resolution level is trained when the volume's finest octave holds more than this share of
# its variance. Measured (benchmarks/results/grid/finest): leaving it out gained 0.7 dB on the MRI
# (share 0.015; 1.0 dB at 0.25 BPV) and 0.5 dB on the CT (0.061), twice the steps in the same time;
# it lost 1.1 dB on the light-sheet crop (0.20) and 7.2 dB on the neuron crop (0.22).
FINE_DETAIL_SHARE = 0.1


def fine_detail_share(volume: np.ndarray) -> float:
    """The share of ``volume``'s variance that its finest octave holds: the mean squared difference
    between the volume and its 2×-averaged copy interpolated back (the decoder's level-1 map), over
    the variance."""
    x = np.asarray(volume, dtype=np.float32)
    coarse = x
    for axis in range(x.ndim):
        if coarse.shape[axis] % 2:  # ⌈s/2⌉ samples, as a latent level has: the last one repeated
            coarse = np.concatenate((coarse, np.take(coarse, [-1], axis=axis)), axis=axis)
        shape = coarse.shape
        coarse = coarse.reshape(*shape[:axis], shape[axis] // 2, 2, *shape[axis + 1:]).mean(axis=axis + 1)
    smooth = interpolate_box(coarse, 1, x.shape, tuple((0, s) for s in x.shape))
    variance = float(x.var())
    return float(np.mean((x - smooth) ** 2)) / variance if variance > 0 else 0.0


def choose_finest_level(volume: np.ndarray) -> int:
    """The finest level worth training: 1 (half resolution) when fine detail holds little of the
    volume, so that a step costs half as much; 0 otherwise."""
    return 0 if fine_detail_share(volume) > FINE_DETAIL_SHARE else 1


# Upsampling by the cubic B-spline where it approximates the volume clearly better than trilinear
# interpolation: the least-squares projection of a central crop on each half-resolution basis
# (level 1, where most bits go), the error measured inside a margin (at the crop's faces both bases
# only repeat their edge samples). Measured (session 27, 128-voxel crops): MRI +0.89 dB, CT +0.29,
# light-sheet crop −0.02, neuron crop +0.29; in 300-s fits the MRI gained +0.3 to +0.4 dB at
# 0.02–0.05 BPV from the B-spline and was level at 0.1, the CT lost 0.3–1.0 dB at 0.05 BPV, the
# light-sheet crop was level (docs/benchmarks.md §7, session 27).
BSPLINE_GAIN_DB = 0.5
UPSAMPLING_PROBE_SIDE = 128
UPSAMPLING_PROBE_MARGIN = 4


def bspline_gain(volume: np.ndarray) -> float:
    """dB by which a half-resolution cubic B-spline fits a central crop of ``volume`` (at most
    ``UPSAMPLING_PROBE_SIDE`` voxels an axis) better than trilinear interpolation, each the best
    (least-squares) coefficients, the error taken ``UPSAMPLING_PROBE_MARGIN`` voxels inside the
    crop's faces: separable, so the projection is one matrix per axis."""
    side, margin = UPSAMPLING_PROBE_SIDE, UPSAMPLING_PROBE_MARGIN
    crop = tuple(slice(max(0, (s - side) // 2), max(0, (s - side) // 2) + min(s, side)) for s in volume.shape)
    x = np.asarray(volume[crop], dtype=np.float64)
    inside = tuple(slice(margin, s - margin) if s > 2 * margin + 2 else slice(None) for s in x.shape)
    errors = []
    for upsampling in ("linear", "bspline"):
        fitted = x
        for axis, size in enumerate(x.shape):
            basis = axis_matrix(size, 1, np.arange(size), upsampling).astype(np.float64)
            projection = basis @ np.linalg.pinv(basis)
            fitted = np.moveaxis(np.tensordot(projection, np.moveaxis(fitted, axis, 0), axes=1), 0, axis)
        errors.append(float(np.mean((x - fitted)[inside] ** 2)))
    linear, bspline = errors
    return 10 * math.log10(linear / bspline) if bspline > 0 and linear > 0 else 0.0


def choose_upsampling(volume: np.ndarray) -> str:
    """``bspline`` when it fits the volume at least ``BSPLINE_GAIN_DB`` better, else ``linear``."""
    return "bspline" if bspline_gain(volume) >= BSPLINE_GAIN_DB else "linear"


COMPILE_PAYBACK_S = 60.0  # compile a step when the fit is projected to run longer than this


def _should_compile(setting: str, step_seconds: float, steps_left: int, time_limit: float | None) -> bool:
    """``auto``: compile when the rest of the fit would take long enough for the compiling (tens of
    seconds here) to pay back; short fits (tests, previews) stay eager."""
    if setting != "auto":
        return setting == "on"
    projected = step_seconds * steps_left
    if time_limit is not None:
        projected = min(projected, time_limit)
    return projected > COMPILE_PAYBACK_S


def fit_grid(trainer: GridTrainer, steps: int, target_bits: float | None, time_limit: float | None,
             stop: Callable[[], bool], report_every: int = 10,
             ) -> Generator[GridStep, None, GridFitState]:
    """Train; yield a :class:`GridStep` every ``report_every`` steps; return the final state.

    With ``target_bits`` the λ controller keeps the hard-rounded rate at ``RATE_MARGIN`` of it. With a
    ``time_limit`` the schedule is stretched over the steps that fit in it (measured on the first
    steps), so the cosine decay and the rounding phase still happen.
    """
    settings = trainer.settings
    lam = starting_lambda(settings, (target_bits or 0.25 * trainer.n_voxels) / trainer.n_voxels)
    lam_range = (lam * LAMBDA_SPAN[0], lam * LAMBDA_SPAN[1])
    total = max(1, steps)
    started = time.perf_counter()
    reason = "steps"
    step = 0
    marks: deque[tuple[int, float]] = deque(maxlen=PACE_WINDOW // CONTROL_EVERY + 1)  # (step, s)
    schedule = Schedule(settings)
    calibration: float | None = None  # coded bits / estimated bits, re-measured every CALIBRATE_EVERY
    while step < total:
        if stop():
            reason = "cancelled"
            break
        lr, mode = schedule(step, total)
        warming = step < settings.warmup_fraction * total  # MSE only: let the latents grow first
        loss_tensor = trainer.step(lr, mode, 0.0 if warming else lam)
        step += 1
        elapsed = time.perf_counter() - started
        if step == 3 and _should_compile(settings.compile_step, elapsed / 3, total - 3, time_limit):
            trainer.enable_compile()
        if time_limit is not None and (step == 3 or step % CONTROL_EVERY == 0):
            # the schedule is stretched over the steps that still fit at the pace of the last
            # PACE_WINDOW steps (the machine's load changes, a compiled step is faster; a 10-step
            # window jittered by a tenth with each calibration); the clock ends the fit
            start = marks[0] if marks else (0, 0.0)
            pace = (elapsed - start[1]) / max(1, step - start[0])
            if step <= CONTROL_EVERY:  # later windows start after the compile (at step 3)
                marks.clear()
            marks.append((step, elapsed))
            fits = step + int(max(0.0, time_limit - elapsed) / max(pace, 1e-9))
            total = max(step + 1, min(max(1, steps), fits))
            if elapsed >= time_limit:
                total, reason = step, "time"
        estimate: float | None = None
        if target_bits is not None and step % CONTROL_EVERY == 0 and not warming:
            estimate = trainer.hard_bits()
            if calibration is None or step % CALIBRATE_EVERY == 0:
                # the controller steers the size the file will have, not the estimate's
                calibration = float(np.clip(trainer.coded_bits() / max(estimate, 1.0), *CALIBRATION_RANGE))
            ratio = estimate * calibration / max(target_bits * RATE_MARGIN, 1.0)
            lam *= math.exp(CONTROL_GAIN * float(np.clip(math.log(max(ratio, 1e-6)), -1, 1)))
            lam = float(np.clip(lam, *lam_range))  # on the MRI an unbounded λ reached 1e6 and the
            # synthesis, quantised at that slope, collapsed to 12 dB; the latent step Δ fits the rest
        if step % report_every == 0 or step == total:
            bits = estimate if estimate is not None else trainer.hard_bits()
            yield GridStep(step, total, float(loss_tensor), trainer.sampled_mse(), bits, lam, lr, elapsed)
    with torch.no_grad():
        mse, bits = trainer.evaluate("hard")
    return GridFitState(trainer.latents, trainer.synthesis, lam, step, time.perf_counter() - started,
                        float(mse), float(bits), reason)
