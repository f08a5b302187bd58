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

from napari_sci.core.allocation import BlockNetwork
from napari_sci.core.config import FitConfig, NetworkSpec
from napari_sci.core.events import FitCancelled, FitEvent, FitFinished, FitProgress, FitStarted
from napari_sci.core.partition import Block
from napari_sci.core.siren import BatchedFunnelSiren, group_networks
from napari_sci.core.volume import coordinate_scale
from napari_sci.errors import SciConfigError

StopFlag = Callable[[], bool]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a CUDA request without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SciConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def as_stop_flag(stop: object) -> StopFlag:
    """Accept ``None``, a ``threading.Event`` (or anything with ``is_set``) or a callable."""
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set  # type: ignore[no-any-return, attr-defined]
    if callable(stop):
        return stop  # type: ignore[return-value]
    raise SciConfigError(f"stop must be None, a threading.Event or a callable, got {type(stop)}")


@dataclass
class _Group:
    """Tensors describing the blocks of one stacked module."""

    members: list[int]
    module: BatchedFunnelSiren
    origin: torch.Tensor        # (G, ndim) long
    size: torch.Tensor          # (G, ndim) long
    voxels: torch.Tensor        # (G,) long
    scale: torch.Tensor         # (G, ndim) float32: coordinate step per axis
    offset: torch.Tensor        # (G, ndim) float32: 1, or 0 for a one-voxel axis
    samples: int
    full: torch.Tensor          # (G,) bool: block fits in one batch


def _make_group(members: list[int], blocks: Sequence[Block], networks: Sequence[BlockNetwork],
                spec: NetworkSpec, config: FitConfig, generator: torch.Generator,
                device: torch.device) -> _Group:
    ndim = len(blocks[0].size)
    module = BatchedFunnelSiren([networks[i] for i in members], ndim, spec, generator).to(device)
    sizes = [blocks[i].size for i in members]
    voxels = torch.tensor([blocks[i].voxels for i in members], dtype=torch.long, device=device)
    samples = int(min(config.samples_per_block, int(voxels.max())))
    return _Group(
        members=members, module=module,
        origin=torch.tensor([blocks[i].origin for i in members], dtype=torch.long, device=device),
        size=torch.tensor(sizes, dtype=torch.long, device=device),
        voxels=voxels,
        scale=torch.tensor([[coordinate_scale(s) for s in sz] for sz in sizes],
                           dtype=torch.float32, device=device),
        offset=torch.tensor([[1.0 if s > 1 else 0.0 for s in sz] for sz in sizes],
                            dtype=torch.float32, device=device),
        samples=samples, full=voxels <= samples)


def _sample(group: _Group, generator: torch.Generator,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel indices within each block (G, n) and their loss weights (G, n)."""
    n = group.samples
    ramp = torch.arange(n, device=device).expand(len(group.members), n)
    wrapped = ramp % group.voxels[:, None]
    drawn = (torch.rand(len(group.members), n, generator=generator, device=device)
             * group.voxels[:, None]).long().clamp_max_(group.voxels[:, None] - 1)
    index = torch.where(group.full[:, None], wrapped, drawn)
    weight = torch.where(group.full[:, None], (ramp < group.voxels[:, None]).float(),
                         torch.ones((), device=device))
    return index, weight


def _coordinates_and_targets(group: _Group, index: torch.Tensor, targets: torch.Tensor,
                             strides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs (G, n, ndim) in [-1, 1] and targets (G, n) for block-local flat indices."""
    ndim = group.size.shape[1]
    position = []
    rest = index
    for axis in range(ndim - 1, -1, -1):
        extent = group.size[:, axis: axis + 1]
        position.append(rest % extent)
        rest = rest // extent
    position.reverse()
    coords = torch.stack(
        [position[a].float() * group.scale[:, a: a + 1] - group.offset[:, a: a + 1]
         for a in range(ndim)], dim=-1)
    flat = sum((group.origin[:, a: a + 1] + position[a]) * strides[a] for a in range(ndim))
    return coords, targets[flat]


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
               config: FitConfig, stop: object = None) -> Iterator[FitEvent]:
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
    """
    should_stop = as_stop_flag(stop)
    device = resolve_device(config.device)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    init_generator = torch.Generator().manual_seed(config.seed)
    ndim = volume.ndim
    groups = [_make_group(m, blocks, networks, spec, config, init_generator, device)
              for m in group_networks(networks, ndim, spec.layers)]
    n_params = sum(n.params(ndim, spec.layers) for n in networks)
    n_networks = sum(len(g.members) for g in groups)
    yield FitStarted(config.steps, len(blocks), n_networks, n_params,
                     len(groups), str(device), config.time_limit)
    if not groups:
        yield FitFinished(0, 0.0, math.inf, "no networks", (None,) * len(blocks))
        return
    targets = torch.from_numpy(normalised_targets(volume, blocks, lows, highs).ravel()).to(device)
    strides = [int(np.prod(volume.shape[a + 1:], dtype=np.int64)) for a in range(ndim)]
    n_total = float(volume.size)
    constant_sse = sum(float(((volume[b.slices].astype(np.float64) - lows[i]) ** 2).sum())
                       for i, b in enumerate(blocks) if networks[i].is_constant)
    raw_scale = [torch.tensor([((highs[i] - lows[i]) / 2.0) ** 2 * blocks[i].voxels / n_total
                               for i in g.members], dtype=torch.float32, device=device)
                 for g in groups]
    optimiser = torch.optim.Adamax([p for g in groups for p in g.module.parameters()], lr=config.lr)
    start = time.perf_counter()
    step, reason, lr = 0, "steps", config.lr
    psnr = math.nan
    while step < config.steps:
        if should_stop():
            yield FitCancelled(step, time.perf_counter() - start)
            return
        elapsed = time.perf_counter() - start
        if config.time_limit is not None and elapsed >= config.time_limit:
            reason = "time limit"
            break
        late = step >= config.decay_at * config.steps or (
            config.time_limit is not None and elapsed >= config.decay_at * config.time_limit)
        if late and lr == config.lr:
            lr = config.lr * config.decay
            for param_group in optimiser.param_groups:
                param_group["lr"] = lr
        optimiser.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        raw_mse = torch.zeros((), device=device)
        for group, scale in zip(groups, raw_scale):
            index, weight = _sample(group, generator, device)
            coords, target = _coordinates_and_targets(group, index, targets, strides)
            error = (group.module(coords) - target).square() * weight
            block_mse = error.sum(dim=1) / weight.sum(dim=1)
            loss = loss + block_mse.sum()
            raw_mse = raw_mse + (block_mse.detach() * scale).sum()
        loss.backward()
        optimiser.step()
        step += 1
        if step % config.report_every == 0 or step == config.steps:
            mse = float(raw_mse) + constant_sse / n_total
            psnr = 10 * math.log10(span**2 / mse) if mse > 0 else math.inf
            yield FitProgress(step, config.steps, float(loss.detach()) / n_networks, psnr,
                              time.perf_counter() - start, lr)
    weights: list[np.ndarray | None] = [None] * len(blocks)
    for group in groups:
        for j, i in enumerate(group.members):
            weights[i] = group.module.block_weights(j)
    yield FitFinished(step, time.perf_counter() - start, psnr, reason, tuple(weights))
