"""The block tree drawn over a volume: a Labels layer of block ids plus a Vectors layer of box edges.

Why two layers: napari shows a Shapes layer's shape only in slices that contain all of it, so a 3D box
outline never appears in a 2D slice, and a stack of per-slice rectangles fills the 3D view with walls.
A Labels layer outlines every block in every 2D slice, but in 3D napari renders it as a translucent
volume. A Vectors layer holding the 12 edges of each box draws a true wireframe in 3D, but in 2D shows
only the edges lying in the current plane. So the overlay shows the Labels layer in 2D and the
wireframe in 3D, switching with the view; both are coloured by the same per-block value (D or
parameter share).

The Labels layer draws each block's walls along the last two axes (the plane napari shows by default)
with label ``k + n`` and its inside, faintly tinted, with label ``k``; napari's own contour mode is not
used because it warns on every switch to 3D. Both labels of a block carry its D, size and parameter
count as ``features``, so napari's status bar shows them wherever the cursor is in a block.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_sci.core.codec import BlockPlan
from napari_sci.core.partition import Block

if TYPE_CHECKING:
    import napari

COLOUR_BY = {"spectrum concentration D": "D", "parameter share": "share"}
COLORMAP = "plasma"
COLOUR_RANGE = (0.3, 1.0)  # the dark end of the colormap vanishes on a dark canvas
INSIDE_ALPHA = 0.12


def block_features(plan: BlockPlan) -> pd.DataFrame:
    """One row per block: ``block`` is its 1-based number (its label inside; ``+ n`` on its walls)."""
    blocks = plan.partition.blocks
    params = np.asarray(plan.params, dtype=np.int64)
    total = max(int(params.sum()), 1)
    return pd.DataFrame({
        "block": np.arange(1, len(blocks) + 1),
        "node": [b.node for b in blocks],
        "level": [b.level for b in blocks],
        "origin": ["×".join(map(str, b.origin)) for b in blocks],
        "size": ["×".join(map(str, b.size)) for b in blocks],
        "voxels": [b.voxels for b in blocks],
        "D": [b.concentration for b in blocks],
        "params": params,
        "share": params / total,
    })


def label_features(features: pd.DataFrame) -> pd.DataFrame:
    """The block table twice, as napari's Labels features: ``index`` k inside block k, k + n on its walls."""
    n = len(features)
    inside = features.assign(index=features["block"], part="inside")
    walls = features.assign(index=features["block"] + n, part="wall")
    return pd.concat([inside, walls], ignore_index=True)


def block_labels(shape: Sequence[int], blocks: Sequence[Block]) -> np.ndarray:
    """Block k (1-based) of n: label k inside, k + n on its faces across the last two axes."""
    n = len(blocks)
    labels = np.zeros(tuple(shape), dtype=np.uint16 if 2 * n < 2**16 else np.uint32)
    for k, block in enumerate(blocks, start=1):
        labels[block.slices] = k
        for axis in range(max(0, len(shape) - 2), len(shape)):
            for face in (block.origin[axis], block.origin[axis] + block.size[axis] - 1):
                wall = list(block.slices)
                wall[axis] = slice(face, face + 1)
                labels[tuple(wall)] = k + n
    return labels


def box_edges(shape: Sequence[int], blocks: Sequence[Block]) -> tuple[np.ndarray, np.ndarray]:
    """Napari vectors ``(N, 2, ndim)`` (start, displacement) of every block's box edges, and each
    edge's block index.

    Neighbouring boxes meet half way between voxels (``origin - 0.5``); at the volume's border the
    boxes stop at the outer voxel centres, so the overlay does not widen the viewer's slider range."""
    top = np.asarray(shape, dtype=float) - 1
    starts, steps, owner = [], [], []
    for index, block in enumerate(blocks):
        low = np.maximum(np.asarray(block.origin, dtype=float) - 0.5, 0)
        high = np.minimum(np.asarray(block.origin, dtype=float) + np.asarray(block.size) - 0.5, top)
        ndim = len(block.size)
        for axis in range(ndim):
            others = [a for a in range(ndim) if a != axis]
            for corner in itertools.product((0, 1), repeat=ndim - 1):
                start = low.copy()
                for a, side in zip(others, corner):
                    start[a] = high[a] if side else low[a]
                step = np.zeros(ndim)
                step[axis] = high[axis] - low[axis]
                starts.append(start)
                steps.append(step)
                owner.append(index)
    return np.stack([np.asarray(starts), np.asarray(steps)], axis=1), np.asarray(owner)


def block_colours(values: np.ndarray, colormap: str = COLORMAP) -> np.ndarray:
    """RGBA per block: ``values`` scaled to the colormap's full range (a constant maps to its middle)."""
    from napari.utils.colormaps import ensure_colormap

    values = np.asarray(values, dtype=float)
    span = float(np.ptp(values)) if values.size else 0.0
    scaled = (values - values.min()) / span if span > 0 else np.full(values.shape, 1.0)
    scaled = COLOUR_RANGE[0] + scaled * (COLOUR_RANGE[1] - COLOUR_RANGE[0])
    return np.asarray(ensure_colormap(colormap).map(scaled), dtype=np.float32)


class BlockOverlay:
    """Creates the two overlay layers once and afterwards updates them in place."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.labels: Any = None
        self.edges: Any = None
        viewer.dims.events.ndisplay.connect(self._match_view)

    def _alive(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    def show(self, image: Any, plan: BlockPlan, colour_by: str) -> None:
        """Draw ``plan``'s blocks over ``image`` (same scale and translation), coloured by ``colour_by``."""
        features = label_features(block_features(plan))
        ids = block_labels(image.data.shape, plan.partition.blocks)
        vectors, owner = box_edges(image.data.shape, plan.partition.blocks)
        where = {"scale": image.scale, "translate": image.translate}
        if self._alive(self.labels):
            self.labels.data = ids
            self.labels.features = features
            self.labels.scale, self.labels.translate = where["scale"], where["translate"]
        else:
            self.labels = self.viewer.add_labels(ids, name=f"{image.name} blocks", features=features,
                                                 opacity=0.9, visible=False, **where)
        if self._alive(self.edges):
            self.edges.data = vectors
            self.edges.features = pd.DataFrame({"block": owner + 1})
            self.edges.scale, self.edges.translate = where["scale"], where["translate"]
            # napari does not slice a hidden layer: its view would keep indices into the old edges,
            # and recolouring would fail with an IndexError (after a visit to 3D)
            self.edges.set_view_slice()
        else:
            self.edges = self.viewer.add_vectors(
                vectors, name=f"{image.name} block edges", features={"block": owner + 1},
                vector_style="line", edge_width=1.5, opacity=1.0, visible=False, **where)
        self.colour(colour_by)
        self._match_view(shown=True)

    def _match_view(self, event: Any = None, shown: bool | None = None) -> None:
        """Show the layer that draws blocks in the current view: contours in 2D, wireframe in 3D.

        The overlay counts as shown when either layer is visible (or ``shown`` says so)."""
        if not (self._alive(self.labels) and self._alive(self.edges)):
            return
        if shown is None:
            shown = self.labels.visible or self.edges.visible
        three_d = self.viewer.dims.ndisplay == 3
        self.labels.visible = shown and not three_d
        self.edges.visible = shown and three_d

    def colour(self, colour_by: str) -> None:
        """Recolour both layers by a column of the features (``D`` or ``share``)."""
        from napari.utils.colormaps import DirectLabelColormap

        if not self._alive(self.labels):
            return
        features = self.labels.features
        blocks = features[features["part"] == "inside"]
        rgba = block_colours(blocks[COLOUR_BY.get(colour_by, colour_by)].to_numpy())
        tint = rgba * np.array([1, 1, 1, INSIDE_ALPHA], dtype=np.float32)
        n = len(blocks)
        mapping: dict[int | None, Any] = {None: np.zeros(4), 0: np.zeros(4)}
        mapping.update({k: tint[k - 1] for k in range(1, n + 1)})
        mapping.update({k + n: rgba[k - 1] for k in range(1, n + 1)})
        self.labels.colormap = DirectLabelColormap(color_dict=mapping)
        if self._alive(self.edges):
            self.edges.edge_color = rgba[self.edges.features["block"].to_numpy() - 1]
