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

from napari_sci.base.grid_geometry import GridLayout, level_shape, levels_for
from napari_sci.io.latents import LATENT_LIMIT

LATENT_MODES = ("noise", "ste", "hard")


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


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class TilePyramid(nn.Module):
    """One tile's latent levels, initialised at zero as in Cool-chic."""

    def __init__(self, shape: Sequence[int], layout: GridLayout) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.n_levels = levels_for(self.shape, layout.levels)
        self.layout = layout
        self.latents = nn.ParameterList(
            nn.Parameter(torch.zeros(level_shape(self.shape, level))) for level in range(self.n_levels))
        self._mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(self.shape)]

    def quantised(self, mode: str, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Latents as the synthesis sees them: uniform ``noise`` (training), ``ste`` or ``hard`` rounding."""
        out = []
        for latent in self.latents:
            if mode == "noise":
                out.append(latent + torch.empty_like(latent).uniform_(-0.5, 0.5, generator=generator))
            elif mode == "ste":
                out.append(_round_ste(latent))
            else:
                out.append(torch.round(latent))
        return out

    def features(self, grids: Sequence[torch.Tensor]) -> torch.Tensor:
        """(voxels, layout.levels) features of the whole tile; absent coarse levels are zero.

        ``interpolate`` with an exact power-of-two scale places voxel ``i`` at ``(i + 0.5) / 2**l − 0.5``
        and clamps at the borders: the map of ``models.grid.interpolation``, with a fast backward.
        """
        crop = tuple(slice(0, s) for s in self.shape)
        ups = []
        for level, grid in enumerate(grids):
            if level == 0:
                ups.append(grid)
                continue
            up = nn.functional.interpolate(grid[None, None], scale_factor=float(1 << level),
                                           mode=self._mode, align_corners=False,
                                           recompute_scale_factor=False)[0, 0]
            ups.append(up[crop])
        features = torch.stack(ups, dim=-1).reshape(-1, len(ups))
        missing = self.layout.levels - len(ups)
        return nn.functional.pad(features, (0, missing)) if missing else features

    def sampled_features(self, grids: Sequence[torch.Tensor], voxels: torch.Tensor) -> torch.Tensor:
        """(n, layout.levels) features at integer voxel indices ``voxels`` (n, ndim) of this tile.

        The same linear interpolation as :meth:`features`, gathered at the voxels only, so a step can
        train on a random sample of a large tile at a cost proportional to the sample.
        """
        position = voxels.to(torch.float32) + 0.5
        corners = torch.tensor([[(c >> a) & 1 for a in range(voxels.shape[1])]
                                for c in range(1 << voxels.shape[1])], device=voxels.device)
        cols = []
        for level, grid in enumerate(grids):
            dims = torch.tensor(grid.shape, device=voxels.device)
            p = (position / (1 << level) - 0.5).clamp_min(0)
            p = torch.minimum(p, (dims - 1).to(torch.float32))
            lower = p.floor().long()
            upper = torch.minimum(lower + 1, dims - 1)
            weight = p - lower
            strides = torch.tensor([int(np.prod(grid.shape[k + 1:])) for k in range(grid.ndim)],
                                   device=voxels.device)
            # (n, corners, ndim): the lower or upper index and weight of each corner along each axis
            index = torch.where(corners.bool(), upper[:, None, :], lower[:, None, :])
            w = torch.where(corners.bool(), weight[:, None, :], 1 - weight[:, None, :]).prod(-1)
            flat_index = (index * strides).sum(-1)
            cols.append((grid.reshape(-1)[flat_index] * w).sum(-1))
        features = torch.stack(cols, dim=-1)
        missing = self.layout.levels - len(cols)
        return nn.functional.pad(features, (0, missing)) if missing else features

    @staticmethod
    def scales(grids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each level's Laplace scale: the maximum-likelihood one, mean |latent| (not trained)."""
        return [g.detach().abs().mean().clamp(2.0 ** -6, 2.0 ** 9) for g in grids]

    def bits(self, grids: Sequence[torch.Tensor], fraction: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Estimated coded bits of these latents (each level at its maximum-likelihood scale).

        ``fraction`` < 1 estimates them from that share of each level's latents, drawn at random and
        scaled up (unbiased): a training step then costs in proportion to its voxel sample, not to the
        millions of latents of a large volume.
        """
        total = torch.zeros((), device=grids[0].device)
        for grid, scale in zip(grids, self.scales(grids)):
            flat = grid.reshape(-1)
            n = flat.numel()
            if fraction < 1.0 and n * fraction >= 1:
                count = max(1, round(n * fraction))
                index = torch.randint(0, n, (count,), generator=generator, device=flat.device)
                total = total + laplace_bits(flat[index], scale).sum() * (n / count)
            else:
                total = total + laplace_bits(flat, scale).sum()
        return total

    def clamp_(self) -> None:
        with torch.no_grad():
            for latent in self.latents:
                latent.clamp_(-LATENT_LIMIT, LATENT_LIMIT)

    def integer_latents(self) -> list[np.ndarray]:
        return [torch.round(g).detach().cpu().numpy().astype(np.int32) for g in self.latents]
