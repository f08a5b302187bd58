"""Side by side in napari's grid mode: one camera and one slice for every panel, an ROI in each.

napari's grid puts consecutive layers into one panel (``stride``); with a negative stride it counts
from the top of the layer list. The compared layers go to the top, each under its own copy of the ROI
rectangle: [ROI, original], [ROI copy, decoded], [ROI copy, difference]. The copies follow the ROI
and cannot be edited. Other layers are hidden while the grid is on and shown again afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari

STRIDE = -2


def grid_of(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


class SideBySide:
    """Arranges (and restores) the viewer's grid for comparing layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.copies: list[Any] = []
        self._hidden: list[Any] = []
        self._roi: Any = None
        self._saved: tuple[Any, Any] | None = None

    @property
    def enabled(self) -> bool:
        return bool(grid_of(self.viewer).enabled)

    def _copy(self, roi: Any, panel: Any) -> Any:
        copy = self.viewer.add_shapes(
            roi.data, shape_type="rectangle", name=f"ROI ({panel.name})", edge_color=roi.edge_color,
            face_color="transparent", edge_width=roi.edge_width, scale=roi.scale,
            translate=roi.translate)
        copy.editable = False
        return copy

    def _follow(self, event: Any = None) -> None:
        for copy in self.copies:
            if copy in self.viewer.layers:
                copy.data = self._roi.data

    def enable(self, roi: Any, panels: list[Any]) -> None:
        """Show ``panels`` (original first) side by side, each under the ROI or a copy of it."""
        self.disable()
        self._roi = roi
        self.copies = [self._copy(roi, panel) for panel in panels[1:]]
        roi.events.data.connect(self._follow)
        order = [item for pair in zip([roi, *self.copies], panels) for item in pair]
        self._hidden = [layer for layer in self.viewer.layers if layer not in order and layer.visible]
        for layer in self._hidden:
            layer.visible = False
        for layer in reversed(order):  # the last one moved ends on top
            self.viewer.layers.move(self.viewer.layers.index(layer), len(self.viewer.layers))
        for layer in order:
            layer.visible = True
        grid = grid_of(self.viewer)
        if self._saved is None:
            self._saved = (grid.stride, grid.shape)
        grid.stride, grid.shape, grid.enabled = STRIDE, (1, len(panels)), True
        self.viewer.reset_view()

    def disable(self) -> None:
        """Leave grid mode, drop the ROI copies and show the hidden layers again."""
        if self._roi is not None:
            self._roi.events.data.disconnect(self._follow)
            self._roi = None
        for copy in self.copies:
            if copy in self.viewer.layers:
                self.viewer.layers.remove(copy)
        self.copies = []
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
        if self._saved is not None:
            grid = grid_of(self.viewer)
            grid.stride, grid.shape = self._saved
            self._saved = None
            grid.enabled = False
            self.viewer.reset_view()
