"""One training step for every block network at once, as a fixed-shape function that can be compiled.

A step is split where the random stream lives: the minibatch draws come from the fit's
``torch.Generator`` outside the function (one ``rand`` per sampled group, in the same order as the
eager loop always drew them, so a seed gives the same samples compiled or not), and everything after
them — positions to coordinates, the targets' gather, every group's stacked forward pass and the loss —
is one function of fixed shapes with no host synchronisation. ``torch.compile`` turns that function
and its backward into a few fused kernels (on a CPU, ``sin`` + bias and ``cos`` × gradient become one
pass each instead of two or three; on CUDA, ``reduce-overhead`` replays the whole step as one CUDA
graph instead of hundreds of launches). Progress is read by the caller every ``report_every`` steps.

``compile`` modes (``FitConfig.compile``): ``off`` (eager, bit-identical to the loop before this module),
``default``, ``max-autotune-no-cudagraphs``, ``reduce-overhead``, and ``auto``: ``reduce-overhead`` on
CUDA, :data:`CPU_AUTO` on a CPU (chosen by measurement, docs/benchmarks.md §5). A compile that fails is
logged and the step runs eagerly; the time it took counts in the fit's elapsed time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from napari_sci.base.config import COMPILE_MODES

logger = logging.getLogger(__name__)

RECOMPILE_LIMIT = 1024  # fits (graphs) one process may compile before dynamo gives up
CPU_AUTO = "off"  # measured on the 2-core CPU: see docs/benchmarks.md §5

__all__ = ["COMPILE_MODES", "CPU_AUTO", "StepFunction", "block_mse", "resolve_compile"]

Draws = list[torch.Tensor | None]


def resolve_compile(mode: str, device: torch.device) -> str:
    """The mode a fit on ``device`` uses: ``auto`` picks per device; CUDA graphs need CUDA."""
    if mode == "auto":
        return "reduce-overhead" if device.type == "cuda" else CPU_AUTO
    if mode == "reduce-overhead" and device.type != "cuda":
        return "default"
    return mode


def block_mse(group: Any, draws: torch.Tensor | None, targets: torch.Tensor,
              strides: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each block's network of ``group`` on this step's voxels: (G,)."""
    if group.fixed is not None:
        coords, values, weight = group.fixed
        return ((group.module(coords) - values).square() * weight).sum(dim=1)
    assert draws is not None
    position = torch.minimum((draws * group.size_f[:, None, :]).long(), group.size[:, None, :] - 1)
    coords = position.float() * group.scale - group.offset
    flat = ((group.origin[:, None, :] + position) * strides).sum(dim=-1)
    return (group.module(coords) - targets[flat]).square().mean(dim=1)


class StepFunction:
    """Draws a step's samples and evaluates every group's loss, compiled or eagerly.

    Parameters
    ----------
    groups
        The fit's stacked groups (``fit._Group``): module, geometry, fixed full-batch inputs.
    targets, strides
        The normalised volume, flattened, and its strides (for the gather of sampled voxels).
    raw_scale
        Per group, what turns a block's MSE into its share of the volume's MSE in data units².
    mode
        A resolved compile mode (see :func:`resolve_compile`); ``off`` runs eagerly.
    """

    def __init__(self, groups: Sequence[Any], targets: torch.Tensor, strides: torch.Tensor,
                 raw_scale: Sequence[torch.Tensor], mode: str) -> None:
        self.groups = list(groups)
        self.targets = targets
        self.strides = strides
        self.raw_scale = list(raw_scale)
        self.mode = mode
        self._compiled: Callable[[Draws], tuple[torch.Tensor, torch.Tensor]] | None = None
        if mode != "off":
            self._compiled = torch.compile(self.losses, mode=mode, fullgraph=True, dynamic=False)
        self._proven = mode == "off"

    def draws(self, generator: torch.Generator) -> Draws:
        """This step's uniform draws, group by group, from the fit's generator (the eager order)."""
        out: Draws = []
        for group in self.groups:
            if group.fixed is not None:
                out.append(None)
            else:
                out.append(torch.rand(len(group.members), group.samples, group.size.shape[1],
                                      generator=generator, device=group.size.device))
        return out

    def losses(self, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of the blocks' MSEs (what is minimised) and the volume MSE estimate (data units²)."""
        loss = torch.zeros((), device=self.targets.device)
        raw_mse = torch.zeros((), device=self.targets.device)
        for group, scale, draw in zip(self.groups, self.raw_scale, draws):
            mse = block_mse(group, draw, self.targets, self.strides)
            loss = loss + mse.sum()
            raw_mse = raw_mse + (mse.detach() * scale).sum()
        return loss, raw_mse

    def backward(self, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one step; gradients land in the modules' parameters."""
        if self._compiled is None:
            loss, raw_mse = self.losses(draws)
            loss.backward()
            return loss, raw_mse
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        if self._proven:
            loss, raw_mse = self._compiled(draws)
            loss.backward()
            return loss, raw_mse
        try:  # the first call compiles the forward, the first backward compiles the backward
            # every fit is a new graph for the same code object: without a higher limit, dynamo
            # would quietly run the ninth fit of a process (a GUI session, a batch) eagerly
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                loss, raw_mse = self._compiled(draws)
            loss.backward()
        except Exception as error:  # any compiler failure means: run eagerly
            logger.info("torch.compile(mode=%r) failed, fitting eagerly: %s", self.mode, error)
            self._compiled, self.mode = None, "off"
            for group in self.groups:
                group.module.zero_grad(set_to_none=True)
            return self.backward(draws)
        self._proven = True
        return loss, raw_mse
