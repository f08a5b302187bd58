"""Latent-grid model family, the torch side: trainable latent pyramids, shared synthesis, rate.

Cool-chic (Ladune et al., ICCV 2023) and C3 (Kim et al., CVPR 2024) in 3-D: the latents carry the bits,
a tiny MLP turns their upsampled levels into values, and training minimises D + λ·R with the rate
measured by the entropy model on noisy (then straight-through rounded) latents. The geometry and the
decoder live in ``models/grid.py``; this file only trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from napari_sci.base.grid_geometry import GridLayout


class Synthesis(nn.Module):
    """The per-voxel ReLU MLP shared by every tile: levels → hidden → … → 1."""

    def __init__(self, layout: GridLayout) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in layout.dims())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < len(self.linears) - 1:
                x = torch.relu(x)
        return x.squeeze(-1)

    def forward_channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """The same MLP on (levels, voxels) features: W·X products whose long side is the voxels, so
        whole tiles need no transposed copy."""
        for i, linear in enumerate(self.linears):
            x = torch.addmm(linear.bias[:, None], linear.weight, x)
            if i < len(self.linears) - 1:
                x = torch.relu(x)
        return x[0]

    def flat_tensors(self) -> list[np.ndarray]:
        """W₁, b₁, W₂, … as float64 arrays in file order (W row-major, out × in)."""
        return [t.detach().double().cpu().numpy().reshape(-1)
                for lin in self.linears for t in (lin.weight, lin.bias)]

    def load_tensors(self, tensors: Sequence[np.ndarray]) -> None:
        it = iter(tensors)
        with torch.no_grad():
            for lin in self.linears:
                lin.weight.copy_(torch.from_numpy(np.asarray(next(it), np.float32)).view_as(lin.weight))
                lin.bias.copy_(torch.from_numpy(np.asarray(next(it), np.float32)).view_as(lin.bias))


def laplace_bits(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """−log2 P(q) of ``values`` under a zero-mean Laplace of ``scale`` quantised to unit bins.

    Reflected into the lower tail (P = F(½ − |q|) − F(−½ − |q|)) so that no probability is a difference of
    two numbers near one.
    """
    d = values.abs()
    upper = 0.5 - d
    low = 0.5 * torch.exp((-0.5 - d) / scale)
    high = torch.where(upper <= 0, 0.5 * torch.exp(upper.clamp_max(0) / scale),
                       1 - 0.5 * torch.exp(-upper.clamp_min(0) / scale))
    return -torch.log2((high - low).clamp_min(1e-12))
