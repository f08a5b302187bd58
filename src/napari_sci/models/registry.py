"""Which model family evaluates a file's blocks: the one place that maps a model id to its code.

A new family is a new module beside ``siren.py`` and ``grid.py``, a format id and a line here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from napari_sci.io.container import SciContents
from napari_sci.io.format import GRID_MODELS, MODEL_SIREN
from napari_sci.io.loop_filter import LoopFilter

Box = tuple[tuple[int, int], ...]


class BlockModels(Protocol):
    """The coded blocks of one file: evaluate block ``index`` (not a constant) on a local box, or on
    a grid of local voxel indices (one sorted array per axis: a store's coarser levels); its loop
    filter, if the family has them (format 3's models 13 and 14)."""

    def evaluate(self, index: int, local: Box) -> np.ndarray: ...

    def evaluate_at(self, index: int, picks: Sequence[np.ndarray]) -> np.ndarray: ...

    def loop_filter(self, index: int) -> LoopFilter | None: ...


def block_models(contents: SciContents, sizes: Sequence[Sequence[int]], device: str = "cpu") -> BlockModels:
    """The evaluator of ``contents``' model family (``device`` is used by torch-based families)."""
    model = contents.header.model
    if model in GRID_MODELS:
        from napari_sci.models.grid import GridTiles

        return GridTiles.from_contents(contents, sizes)
    if model == MODEL_SIREN:
        from napari_sci.models.siren import SirenBlocks

        return SirenBlocks(contents, sizes, device)
    raise ValueError(f"no evaluator for model id {model}")  # the reader refuses unknown ids first
