"""Network shape arithmetic: a block's widths, its layers' dimensions and its parameter count.

Shared by the byte format (which checks and sizes payloads by it), the models that build the networks
and the allocation that chooses the widths; plain integers, so the format needs no torch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class BlockNetwork:
    """Widths of one block's network; (0, 0) means the block is stored as a constant."""

    first_width: int = 0
    hidden_width: int = 0

    @property
    def is_constant(self) -> bool:
        return self.hidden_width == 0

    def params(self, ndim: int, layers: int) -> int:
        return 0 if self.is_constant else param_count(ndim, self.first_width, self.hidden_width, layers)


def layer_dims(ndim: int, net: BlockNetwork, layers: int) -> list[tuple[int, int]]:
    """(in, out) of every linear layer: ndim → first → hidden … hidden → 1."""
    widths = [ndim, net.first_width] + [net.hidden_width] * (layers - 2) + [1]
    return list(itertools.pairwise(widths))


def param_count(ndim: int, first: int, hidden: int, layers: int) -> int:
    """Parameters of a funnel SIREN: ndim → first → hidden (×layers−2) → 1 (docs/format.md)."""
    return (ndim + 1) * first + (first + 1) * hidden + (layers - 3) * (hidden + 1) * hidden + hidden + 1


def funnel_first_width(hidden: int, fr: float) -> int:
    return max(1, round(fr * hidden))
