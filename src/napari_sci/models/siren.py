"""Funnel-shaped SIRENs, many blocks at once (paper §3.2; Sitzmann et al. 2020 for SIREN).

All networks of a group are stacked into one set of (blocks × in × out) weight tensors and evaluated
with batched matrix products, so a training step costs a handful of kernel calls however many blocks
there are. Networks narrower than the group's widest are zero-padded, and a fixed mask keeps the padding
at zero, so every block trains exactly as it would alone.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
import torch

from napari_sci.base.config import NetworkSpec
from napari_sci.base.networks import BlockNetwork, layer_dims
from napari_sci.base.volume import axis_coordinates, coordinates_at
from napari_sci.io.container import SciContents


def _init_block(ndim: int, net: BlockNetwork, spec: NetworkSpec,
                generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """SIREN initialisation of one block's (W as in×out, b) pairs, independent of padding."""
    params = []
    for k, (fan_in, fan_out) in enumerate(layer_dims(ndim, net, spec.layers)):
        bound = 1.0 / fan_in if k == 0 else math.sqrt(6.0 / fan_in) / spec.w0_hidden
        w = (torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound
        b_bound = 1.0 / math.sqrt(fan_in)
        b = (torch.rand(fan_out, generator=generator) * 2 - 1) * b_bound
        params.append((w, b))
    return params


class BatchedFunnelSiren(torch.nn.Module):
    """The networks of several blocks as one module with stacked, zero-padded weights.

    Parameters
    ----------
    networks
        Widths of each block's network (none may be constant).
    ndim
        Coordinate dimensions (2 or 3).
    spec
        Layers and frequencies shared by all blocks.
    generator
        Seeds the SIREN initialisation; ``None`` leaves the weights at zero (to be loaded).
    """

    def __init__(self, networks: Sequence[BlockNetwork], ndim: int, spec: NetworkSpec,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not networks or any(n.is_constant for n in networks):
            raise ValueError("BatchedFunnelSiren needs at least one non-constant network")
        self.networks = tuple(networks)
        self.ndim = ndim
        self.spec = spec
        padded = BlockNetwork(max(n.first_width for n in networks),
                              max(n.hidden_width for n in networks))
        dims = layer_dims(ndim, padded, spec.layers)
        count = len(networks)
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(count, i, o)) for i, o in dims)
        self.biases = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(count, 1, o)) for _, o in dims)
        frequencies = [spec.w0] + [spec.w0_hidden] * (spec.layers - 2) + [1.0]
        for k, (i, o) in enumerate(dims):
            w_mask = torch.zeros(count, i, o)
            b_mask = torch.zeros(count, 1, o)
            for j, net in enumerate(networks):
                ti, to = layer_dims(ndim, net, spec.layers)[k]
                w_mask[j, :ti, :to] = 1
                b_mask[j, :, :to] = 1
            # The sine frequency is folded into the mask: scaling the small weight tensors is far
            # cheaper than scaling every activation, and sin(w0·(Wx+b)) = sin((w0·W)x + w0·b).
            self.register_buffer(f"w_mask{k}", w_mask * frequencies[k])
            self.register_buffer(f"b_mask{k}", b_mask * frequencies[k])
        if generator is not None:
            with torch.no_grad():
                for j, net in enumerate(networks):
                    self._set_block(j, _init_block(ndim, net, spec, generator))
        self.padded_params = sum(w[0].numel() + b[0].numel()
                                 for w, b in zip(self.weights, self.biases))
        self._steps: list[torch.Tensor] | None = None

    def set_quantisation(self, steps: Sequence[Sequence[float]] | None) -> None:
        """Round weights to these steps in the forward pass (straight-through gradients).

        ``steps[j]`` holds block j's step per tensor in file order (W₁, b₁, W₂, b₂, …); ``None``
        switches quantisation-aware training off.
        """
        if steps is None:
            self._steps = None
            return
        device = self.weights[0].device
        self._steps = [torch.tensor(column, dtype=torch.float32, device=device).view(-1, 1, 1)
                       for column in zip(*steps)]

    def _effective(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = self.weights[k], self.biases[k]
        if self._steps is not None:
            step_w, step_b = self._steps[2 * k], self._steps[2 * k + 1]
            w = w + (torch.round(w / step_w) * step_w - w).detach()
            b = b + (torch.round(b / step_b) * step_b - b).detach()
        return w, b

    def load_block(self, j: int, flat: np.ndarray) -> None:
        """Overwrite block ``j``'s parameters with a flat vector in file order."""
        with torch.no_grad():
            self._set_block(j, unflatten(np.asarray(flat, dtype=np.float32), self.ndim,
                                         self.networks[j], self.spec.layers))

    def _set_block(self, j: int, params: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for k, (w, b) in enumerate(params):
            self.weights[k][j, : w.shape[0], : w.shape[1]] = w
            self.biases[k][j, 0, : b.shape[0]] = b

    def masks(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer k's weight and bias masks: 0 on padding, the layer's sine frequency elsewhere."""
        return getattr(self, f"w_mask{k}"), getattr(self, f"b_mask{k}")

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Evaluate every block's network on its own coordinates: (blocks, n, ndim) → (blocks, n)."""
        y = coords
        last = len(self.weights) - 1
        for k in range(len(self.weights)):
            w, b = self._effective(k)
            w_mask, b_mask = self.masks(k)
            y = torch.baddbmm(b * b_mask, y, w * w_mask)
            if k < last:
                y = torch.sin(y)
        return y.squeeze(-1)

    def block_weights(self, j: int) -> np.ndarray:
        """Block ``j``'s parameters as float32 in the file's order (each W as out×in, then b)."""
        parts = []
        net = self.networks[j]
        for k, (fan_in, fan_out) in enumerate(layer_dims(self.ndim, net, self.spec.layers)):
            w = self.weights[k][j, :fan_in, :fan_out].detach().T
            b = self.biases[k][j, 0, :fan_out].detach()
            parts += [w.reshape(-1), b]
        return torch.cat(parts).to("cpu", torch.float32).numpy()

    @classmethod
    def from_weights(cls, networks: Sequence[BlockNetwork], flat_weights: Sequence[np.ndarray],
                     ndim: int, spec: NetworkSpec) -> BatchedFunnelSiren:
        """Rebuild the module from the file's flat float32 parameters."""
        module = cls(networks, ndim, spec, generator=None)
        with torch.no_grad():
            for j, (net, flat) in enumerate(zip(networks, flat_weights)):
                module._set_block(j, unflatten(np.asarray(flat, dtype=np.float32), ndim, net,
                                               spec.layers))
        return module


def unflatten(flat: np.ndarray, ndim: int, net: BlockNetwork,
              layers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Split a flat parameter vector into (W as in×out, b) pairs; sizes must match exactly."""
    params, at = [], 0
    tensor = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
    for fan_in, fan_out in layer_dims(ndim, net, layers):
        w = tensor[at: at + fan_in * fan_out].reshape(fan_out, fan_in).T
        at += fan_in * fan_out
        b = tensor[at: at + fan_out]
        at += fan_out
        params.append((w, b))
    if at != flat.size:
        raise ValueError(f"expected {at} parameters, got {flat.size}")
    return params


def group_networks(networks: Sequence[BlockNetwork], ndim: int, layers: int,
                   max_waste: float = 0.3) -> list[list[int]]:
    """Indices of networks to stack together, so that zero padding wastes at most ``max_waste``.

    Sorting by width and cutting where padding would exceed the limit keeps the number of groups (and
    so of kernel launches per step) small while not computing mostly zeros.
    """
    order = sorted((i for i, n in enumerate(networks) if not n.is_constant),
                   key=lambda i: (networks[i].hidden_width, networks[i].first_width), reverse=True)
    groups: list[list[int]] = []
    for i in order:
        if groups:
            members = [*groups[-1], i]
            widest = BlockNetwork(max(networks[m].first_width for m in members),
                                  max(networks[m].hidden_width for m in members))
            useful = sum(networks[m].params(ndim, layers) for m in members)
            if useful >= (1 - max_waste) * widest.params(ndim, layers) * len(members):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


class SirenBlocks:
    """The SIREN blocks of one file, rebuilt on demand and cached; thread-safe (formats 1–3, model 1)."""

    CHUNK_VOXELS = 1 << 18

    def __init__(self, contents: SciContents, sizes: Sequence[Sequence[int]], device: str = "cpu") -> None:
        header = contents.header
        self.contents = contents
        self.sizes = sizes
        self.device = torch.device(device)
        self.spec = NetworkSpec(layers=header.layers, fr=1.0, w0=header.w0, w0_hidden=header.w0_hidden,
                                min_hidden=1)
        self._modules: dict[int, BatchedFunnelSiren] = {}
        self._lock = threading.Lock()

    def _module(self, index: int) -> BatchedFunnelSiren:
        with self._lock:
            module = self._modules.get(index)
            if module is None:
                record = self.contents.header.blocks[index]
                net = BlockNetwork(int(record["first_width"]), int(record["hidden_width"]))
                module = BatchedFunnelSiren.from_weights([net], [self.contents.weights(index)],
                                                         self.contents.header.ndim, self.spec)
                module = module.to(self.device)
                module.eval()
                self._modules[index] = module
            return module

    def evaluate(self, index: int, local: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Values (float32, data units) of block ``index`` on the block-local box ``local``."""
        size = self.sizes[index]
        axes = [axis_coordinates(int(size[a]), start, stop) for a, (start, stop) in enumerate(local)]
        return self._evaluate_axes(index, axes)

    def evaluate_at(self, index: int, picks: Sequence[np.ndarray]) -> np.ndarray:
        """Values of block ``index`` on the grid of block-local voxel indices ``picks`` (one array per
        axis, e.g. every second voxel): only those coordinates are evaluated (multiscale reading)."""
        size = self.sizes[index]
        return self._evaluate_axes(index, [coordinates_at(int(size[a]), p) for a, p in enumerate(picks)])

    def loop_filter(self, index: int) -> None:
        """SIREN files (formats 1–3, model 1) have no loop filter."""
        return None

    def _evaluate_axes(self, index: int, axes: Sequence[np.ndarray]) -> np.ndarray:
        record = self.contents.header.blocks[index]
        shape = tuple(len(a) for a in axes)
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
        module = self._module(index)
        out = np.empty(grid.shape[0], dtype=np.float32)
        with torch.inference_mode():
            for at in range(0, grid.shape[0], self.CHUNK_VOXELS):
                coords = torch.from_numpy(grid[at: at + self.CHUNK_VOXELS]).to(self.device)[None]
                out[at: at + self.CHUNK_VOXELS] = module(coords)[0].float().cpu().numpy()
        lo, hi = np.float32(record["lo"]), np.float32(record["hi"])
        return (lo + (out + np.float32(1)) * np.float32(0.5) * (hi - lo)).reshape(shape)
