"""The NeRF-style baseline: positional encoding + ReLU MLP over the whole volume (Mildenhall et al. 2020).

One network maps voxel coordinates in [-1, 1] (the core's convention) to the value normalised to
[-1, 1]. Inputs are encoded as ``[p, sin(2^k π p), cos(2^k π p)]`` for k < ``frequencies``; ``layers``
linear layers of ``width`` units with ReLU between them and a linear output. The width is the largest
whose file fits the budget. Training uses the core's optimiser and schedule (Adamax, lr and decay from
:class:`~napari_sci.base.config.FitConfig`) with random minibatches of ``batch`` voxels.

File: the 30-byte side header (``side_header.py``), then ``<BBH`` layers, frequencies, width, then every
layer's weight (out × in) and bias as float32 little-endian. Nothing else is needed to decode.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_sci.base.config import FitConfig
from napari_sci.base.volume import ValueRange, axis_coordinates, to_dtype
from napari_sci.bench.side_header import SIDE_BYTES, BenchFormatError, SideInfo, pack, unpack
from napari_sci.core.fit import LearningSchedule, as_stop_flag, resolve_device
from napari_sci.errors import SciBudgetError

_SPEC = struct.Struct("<BBH")
NERF_HEADER_BYTES = SIDE_BYTES + _SPEC.size
DECODE_CHUNK = 1 << 18


@dataclass(frozen=True)
class NerfSpec:
    """Shape of the NeRF-style MLP."""

    ndim: int
    width: int
    layers: int = 7
    frequencies: int = 6

    @property
    def in_features(self) -> int:
        return self.ndim * (1 + 2 * self.frequencies)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of every linear layer."""
        sizes = [self.in_features] + [self.width] * (self.layers - 1) + [1]
        return list(zip(sizes[1:], sizes[:-1]))

    @property
    def params(self) -> int:
        return sum(o * i + o for o, i in self.layer_shapes())

    @property
    def file_bytes(self) -> int:
        return NERF_HEADER_BYTES + 4 * self.params


def widest_spec(target_bytes: int, ndim: int, layers: int = 7, frequencies: int = 6) -> NerfSpec:
    """The widest network whose file fits ``target_bytes``; SciBudgetError if not even width 2."""
    width = 2
    if NerfSpec(ndim, width, layers, frequencies).file_bytes > target_bytes:
        raise SciBudgetError(f"{target_bytes} bytes cannot hold a NeRF MLP of width 2 "
                             f"({NerfSpec(ndim, 2, layers, frequencies).file_bytes} bytes)")
    while width < 65535 and NerfSpec(ndim, width + 1, layers, frequencies).file_bytes <= target_bytes:
        width += 1
    return NerfSpec(ndim, width, layers, frequencies)


class NerfMLP(torch.nn.Module):
    """The network; parameters drawn from a given generator (PyTorch's default Linear bounds)."""

    def __init__(self, spec: NerfSpec, generator: torch.Generator) -> None:
        super().__init__()
        self.spec = spec
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for out_f, in_f in spec.layer_shapes():
            bound = 1.0 / math.sqrt(in_f)
            self.weights.append(torch.nn.Parameter(
                torch.empty(out_f, in_f).uniform_(-bound, bound, generator=generator)))
            self.biases.append(torch.nn.Parameter(
                torch.empty(out_f).uniform_(-bound, bound, generator=generator)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        scales = (2.0 ** torch.arange(self.spec.frequencies, device=coords.device)) * math.pi
        angles = coords[..., None] * scales
        parts = [coords, torch.sin(angles).flatten(-2), torch.cos(angles).flatten(-2)]
        return torch.cat(parts, dim=-1)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = self.encode(coords)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.nn.functional.linear(x, w, b)
            if i < last:
                x = torch.relu(x)
        return x[..., 0]

    def to_bytes(self) -> bytes:
        arrays = []
        for w, b in zip(self.weights, self.biases):
            arrays += [w.detach().cpu().numpy().ravel(), b.detach().cpu().numpy().ravel()]
        return np.concatenate(arrays).astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, spec: NerfSpec, data: bytes) -> NerfMLP:
        if len(data) != 4 * spec.params:
            raise BenchFormatError(f"NeRF weights are {len(data)} bytes, expected {4 * spec.params}")
        model = cls(spec, torch.Generator().manual_seed(0))
        values = torch.from_numpy(np.frombuffer(data, dtype="<f4").astype(np.float32))
        offset = 0
        with torch.no_grad():
            for param in [p for pair in zip(model.weights, model.biases) for p in pair]:
                param.copy_(values[offset: offset + param.numel()].view_as(param))
                offset += param.numel()
        return model


def _coordinates(shape: Sequence[int], flat: torch.Tensor) -> torch.Tensor:
    """Coordinates in [-1, 1] (the core's voxel convention) of flat voxel indices."""
    axes = [torch.from_numpy(axis_coordinates(s)).to(flat.device) for s in shape]
    columns, rest = [], flat
    for axis in range(len(shape) - 1, -1, -1):
        columns.append(axes[axis][rest % shape[axis]])
        rest = rest // shape[axis]
    return torch.stack(columns[::-1], dim=-1)


def fit_nerf(volume: np.ndarray, spec: NerfSpec, fit: FitConfig, batch: int,
             stop: object = None) -> tuple[NerfMLP, int]:
    """Train the network on ``volume``; returns it (on the CPU) and the steps taken."""
    device = resolve_device(fit.device)
    should_stop = as_stop_flag(stop)
    init = torch.Generator().manual_seed(fit.seed)
    sampler = torch.Generator(device=device).manual_seed(fit.seed)
    model = NerfMLP(spec, init).to(device)
    side = SideInfo.of(volume)
    scale = 2.0 / side.span if side.span > 0 else 0.0
    target = torch.from_numpy(((volume.astype(np.float64) - side.low) * scale - 1.0)
                              .astype(np.float32).ravel()).to(device)
    n = target.numel()
    optimiser = torch.optim.Adamax(model.parameters(), lr=fit.lr)
    schedule, step = LearningSchedule(optimiser, fit), 0
    while step < fit.steps and not should_stop() and schedule.next_step(step):
        index = (torch.arange(n, device=device) if n <= batch
                 else torch.randint(n, (batch,), generator=sampler, device=device))
        optimiser.zero_grad(set_to_none=True)
        loss = (model(_coordinates(volume.shape, index)) - target[index]).square().mean()
        loss.backward()
        optimiser.step()
        step += 1
    return model.cpu(), step


def nerf_encode(volume: np.ndarray, target_bytes: int, fit: FitConfig, batch: int,
                layers: int = 7, frequencies: int = 6) -> tuple[bytes, NerfSpec, int]:
    """The NeRF file for ``volume`` in at most ``target_bytes``; with its spec and steps taken."""
    spec = widest_spec(target_bytes, volume.ndim, layers, frequencies)
    model, steps = fit_nerf(volume, spec, fit, batch)
    head = _SPEC.pack(spec.layers, spec.frequencies, spec.width)
    return pack(SideInfo.of(volume), head + model.to_bytes()), spec, steps


def nerf_decode(blob: bytes) -> np.ndarray:
    """Rebuild the volume from a NeRF file alone."""
    side, payload = unpack(blob)
    if len(payload) < _SPEC.size:
        raise BenchFormatError("NeRF file is too short for its network header")
    layers, frequencies, width = _SPEC.unpack_from(payload)
    if layers < 2 or width < 1:
        raise BenchFormatError(f"bad NeRF network header: {layers} layers, width {width}")
    spec = NerfSpec(len(side.shape), width, layers, frequencies)
    model = NerfMLP.from_bytes(spec, payload[_SPEC.size:])
    values = np.empty(side.n_voxels, dtype=np.float32)
    with torch.no_grad():
        for first in range(0, side.n_voxels, DECODE_CHUNK):
            index = torch.arange(first, min(first + DECODE_CHUNK, side.n_voxels))
            values[first: first + len(index)] = model(_coordinates(side.shape, index)).numpy()
    real = (values.astype(np.float64) + 1.0) * (side.span / 2.0) + side.low
    return to_dtype(real.reshape(side.shape), side.dtype, ValueRange(side.low, side.high))
