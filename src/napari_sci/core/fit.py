"""Fitting every block's network at once (paper §3.4): a generator of typed progress events.

Each step samples the same number of voxels from every block (all of them when a block is small enough:
full batch; a random minibatch otherwise), evaluates all networks with batched matrix products, and
takes one Adamax step on the sum of the blocks' mean squared errors. The learning rate drops by
``decay`` after ``decay_at`` of the run. The device, the stop flag and the seed are arguments; nothing
here prints, reads input, or touches global torch settings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_sci.base.config import FitConfig, NetworkSpec
from napari_sci.base.networks import BlockNetwork
from napari_sci.base.volume import coordinate_scale
from napari_sci.core.events import FitCancelled, FitEvent, FitFinished, FitProgress, FitStarted
from napari_sci.core.fit_step import StepFunction, resolve_compile
from napari_sci.core.metrics import psnr_from_mse
from napari_sci.core.partition import Block
from napari_sci.errors import SciConfigError
from napari_sci.models.siren import BatchedFunnelSiren, group_networks

StopFlag = Callable[[], bool]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a CUDA request without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SciConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def padding_waste(device: torch.device) -> float:
    """How much zero padding a stacked group may compute.

    On a GPU a kernel launch per group costs more than padded arithmetic; on a CPU each block's step is
    already large enough that launches hardly matter, and padding is paid in full (measured on the CT
    at 0.25 BPV, 34 networks: waste 0.3 → 6 groups, 17.1 s; 0.1 → 14 groups, 14.9 s; per-block, 14.6 s).
    """
    return 0.3 if device.type == "cuda" else 0.1


def as_stop_flag(stop: object) -> StopFlag:
    """Accept ``None``, a ``threading.Event`` (or anything with ``is_set``) or a callable."""
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set  # type: ignore[no-any-return, attr-defined]
    if callable(stop):
        return stop  # type: ignore[return-value]
    raise SciConfigError(f"stop must be None, a threading.Event or a callable, got {type(stop)}")


class LearningSchedule:
    """The step loop's clock: Adamax's learning rate is ``lr``, times ``decay`` once ``decay_at`` of the
    steps (or of the time limit) has passed, and the time limit ends the run.

    Shared by the SCI fit and the benchmarks' NeRF baseline, so both train on the same schedule.
    """

    def __init__(self, optimiser: torch.optim.Optimizer, config: FitConfig) -> None:
        self.optimiser = optimiser
        self.config = config
        self.lr = config.lr
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def next_step(self, step: int) -> bool:
        """Set the rate for step ``step``; False when the time limit has run out instead."""
        config, elapsed = self.config, self.elapsed
        if config.time_limit is not None and elapsed >= config.time_limit:
            return False
        late = step >= config.decay_at * config.steps or (
            config.time_limit is not None and elapsed >= config.decay_at * config.time_limit)
        if late and self.lr == config.lr:
            self.lr = config.lr * config.decay
            for param_group in self.optimiser.param_groups:
                param_group["lr"] = self.lr
        return True


@dataclass
class _Group:
    """The blocks of one stacked module and what a step needs to feed them.

    A *full* group holds blocks small enough to use all their voxels every step (full batch): their
    coordinates, targets and padding weights are computed once. A *sampled* group draws a fresh random
    minibatch per block and step, each axis independently (uniform over the block's voxels).
    """

    members: list[int]
    module: BatchedFunnelSiren
    samples: int
    origin: torch.Tensor          # (G, ndim) long
    size: torch.Tensor            # (G, ndim) long, float copy in size_f
    size_f: torch.Tensor
    scale: torch.Tensor           # (G, 1, ndim) coordinate step per axis
    offset: torch.Tensor          # (G, 1, ndim) 1, or 0 for a one-voxel axis
    fixed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # coords, targets, weights


def _positions_to_inputs(group: _Group, position: torch.Tensor, targets: torch.Tensor,
                         strides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-local voxel positions (G, n, ndim) → network inputs in [-1, 1] and their targets."""
    coords = position.float() * group.scale - group.offset
    flat = ((group.origin[:, None, :] + position) * strides).sum(dim=-1)
    return coords, targets[flat]


def _make_group(members: list[int], blocks: Sequence[Block], networks: Sequence[BlockNetwork],
                spec: NetworkSpec, samples_per_block: int, generator: torch.Generator,
                device: torch.device, targets: torch.Tensor, strides: torch.Tensor) -> _Group:
    ndim = len(blocks[0].size)
    module = BatchedFunnelSiren([networks[i] for i in members], ndim, spec, generator).to(device)
    sizes = [blocks[i].size for i in members]
    voxels = [blocks[i].voxels for i in members]
    size = torch.tensor(sizes, dtype=torch.long, device=device)
    group = _Group(
        members=members, module=module, samples=min(samples_per_block, max(voxels)),
        origin=torch.tensor([blocks[i].origin for i in members], dtype=torch.long, device=device),
        size=size, size_f=size.float(),
        scale=torch.tensor([[coordinate_scale(s) for s in sz] for sz in sizes],
                           dtype=torch.float32, device=device)[:, None, :],
        offset=torch.tensor([[1.0 if s > 1 else 0.0 for s in sz] for sz in sizes],
                            dtype=torch.float32, device=device)[:, None, :])
    if max(voxels) <= samples_per_block:
        n = max(voxels)
        ramp = torch.arange(n, device=device).expand(len(members), n)
        count = torch.tensor(voxels, device=device)[:, None]
        index = ramp % count
        position = []
        for axis in range(ndim - 1, -1, -1):
            position.append(index % size[:, axis: axis + 1])
            index = index // size[:, axis: axis + 1]
        coords, values = _positions_to_inputs(group, torch.stack(position[::-1], dim=-1), targets, strides)
        weight = (ramp < count).float()
        group.fixed = (coords, values, weight / weight.sum(dim=1, keepdim=True))
    return group


def _split_full_and_sampled(groups: list[list[int]], blocks: Sequence[Block],
                            samples_per_block: int) -> list[list[int]]:
    out = []
    for members in groups:
        full = [i for i in members if blocks[i].voxels <= samples_per_block]
        sampled = [i for i in members if blocks[i].voxels > samples_per_block]
        out += [part for part in (full, sampled) if part]
    return out


def normalised_targets(volume: np.ndarray, blocks: Sequence[Block], lows: np.ndarray,
                       highs: np.ndarray) -> np.ndarray:
    """The volume with each block mapped to [-1, 1] by its own (lo, hi): the networks' targets."""
    out = np.zeros(volume.shape, dtype=np.float32)
    for block, lo, hi in zip(blocks, lows, highs):
        if hi > lo:
            out[block.slices] = (volume[block.slices].astype(np.float64) - lo) * (2.0 / (hi - lo)) - 1
    return out


def fit_blocks(volume: np.ndarray, blocks: Sequence[Block], networks: Sequence[BlockNetwork],
               lows: np.ndarray, highs: np.ndarray, span: float, spec: NetworkSpec,
               config: FitConfig, stop: object = None, *,
               initial: Sequence[np.ndarray | None] | None = None,
               quant_steps: Sequence[Sequence[float] | None] | None = None,
               first_step: int = 0, total_steps: int | None = None) -> Iterator[FitEvent]:
    """Train all non-constant blocks together; yield progress and end with ``FitFinished``.

    Parameters
    ----------
    volume
        The original values (any real dtype); only the non-constant blocks are read.
    blocks, networks, lows, highs
        Block geometry, widths, and each block's value range as stored in the file (float32).
    span
        The data's value range, for the PSNR estimate.
    stop
        ``threading.Event`` or callable; when set, the generator yields ``FitCancelled`` and ends.
    initial
        Start from these weights (file order, per block) instead of the SIREN initialisation.
    quant_steps
        Per block, per tensor quantisation steps: train quantisation-aware (format v2 fine-tuning).
    first_step, total_steps
        Numbering of the progress events when this run continues an earlier one.
    """
    should_stop = as_stop_flag(stop)
    device = resolve_device(config.device)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    init_generator = torch.Generator().manual_seed(config.seed)
    ndim = volume.ndim
    targets = torch.from_numpy(normalised_targets(volume, blocks, lows, highs).ravel()).to(device)
    strides = torch.tensor([int(np.prod(volume.shape[a + 1:], dtype=np.int64)) for a in range(ndim)],
                           dtype=torch.long, device=device)
    layout = _split_full_and_sampled(
        group_networks(networks, ndim, spec.layers, max_waste=padding_waste(device)), blocks,
        config.samples_per_block)
    groups = [_make_group(m, blocks, networks, spec, config.samples_per_block, init_generator, device,
                          targets, strides) for m in layout]
    for group in groups:
        for j, i in enumerate(group.members):
            if initial is not None and initial[i] is not None:
                group.module.load_block(j, initial[i])
        if quant_steps is not None:
            group.module.set_quantisation([quant_steps[i] for i in group.members])
    total = config.steps if total_steps is None else total_steps
    n_params = sum(n.params(ndim, spec.layers) for n in networks)
    n_networks = sum(len(g.members) for g in groups)
    yield FitStarted(total, len(blocks), n_networks, n_params,
                     len(groups), str(device), config.time_limit)
    if not groups:
        yield FitFinished(0, 0.0, math.inf, "no networks", (None,) * len(blocks))
        return
    n_total = float(volume.size)
    constant_sse = sum(float(((volume[b.slices].astype(np.float64) - lows[i]) ** 2).sum())
                       for i, b in enumerate(blocks) if networks[i].is_constant)
    raw_scale = [torch.tensor([((highs[i] - lows[i]) / 2.0) ** 2 * blocks[i].voxels / n_total
                               for i in g.members], dtype=torch.float32, device=device)
                 for g in groups]
    # foreach: one kernel per update op for all tensors instead of one per tensor (the same numbers;
    # on the CPU the per-tensor loop was 12 % of a step, mostly call overhead)
    optimiser = torch.optim.Adamax([p for g in groups for p in g.module.parameters()], lr=config.lr,
                                   foreach=True)
    schedule = LearningSchedule(optimiser, config)  # started before compiling: compile time counts
    step_function = StepFunction(groups, targets, strides, raw_scale,
                                 resolve_compile(config.compile, device))
    step, reason = 0, "steps"
    psnr = math.nan
    while step < config.steps:
        if should_stop():
            yield FitCancelled(first_step + step, schedule.elapsed)
            return
        if not schedule.next_step(step):
            reason = "time limit"
            break
        optimiser.zero_grad(set_to_none=True)
        loss, raw_mse = step_function.backward(step_function.draws(generator))
        optimiser.step()
        step += 1
        if step % config.report_every == 0 or step == config.steps:
            mse = float(raw_mse) + constant_sse / n_total
            psnr = psnr_from_mse(mse, span)
            yield FitProgress(first_step + step, total, float(loss.detach()) / n_networks, psnr,
                              schedule.elapsed, schedule.lr)
    weights: list[np.ndarray | None] = [None] * len(blocks)
    for group in groups:
        for j, i in enumerate(group.members):
            weights[i] = group.module.block_weights(j)
    yield FitFinished(step, schedule.elapsed, psnr, reason, tuple(weights))
