"""Compare dock widget: original and decoded side by side, a difference layer, metrics in an ROI."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_sci._napari._spacing import describe
from napari_sci._napari.widgets._form import image_picker, reports_errors, status_label
from napari_sci._napari.widgets._grid import SideBySide
from napari_sci._napari.widgets._roi import RoiMetrics, plane_index, rectangle_box, roi_metrics
from napari_sci.base.volume import value_range

if TYPE_CHECKING:
    import napari

ROI_NAME = "ROI"
MIN_WIDTH = 280  # room for the layer names and the metrics
DIFFERENCE_COLORMAP = "berlin"  # diverging, dark at zero: small errors stay dark on napari's canvas
DIFFERENCE_PERCENTILE = 99.0  # the colour scale spans ± this percentile of |error| on the shown plane


def _plane_axes(ndim: int) -> tuple[int, int]:
    """The compared plane: the last two axes (y, x), napari's default view; the others are the slice."""
    return (ndim - 2, ndim - 1)


def data_range(decoded: Any, original: Any) -> float:
    """The original's value range: stored in a ``.sci`` layer's metadata, else measured."""
    stored = decoded.metadata.get("sci", {}).get("value_range")
    if stored is not None:
        return float(stored[1] - stored[0])
    return value_range(np.asarray(original.data)).span  # as floats: np.ptp wraps around on int16


def misalignment(original: Any, decoded: Any) -> str | None:
    """Why two layers of one shape would not line up voxel for voxel in world coordinates, or None.

    The figures compare index with index, so layers with different voxel sizes or offsets are refused
    rather than shown side by side at different places."""
    for what, a, b in (("voxel sizes", original.scale, decoded.scale),
                       ("offsets (translate)", original.translate, decoded.translate)):
        if not np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-4, atol=1e-9):
            return (f"{original.name} and {decoded.name} have different {what}: {describe(a)} vs "
                    f"{describe(b)}; they would not line up, so give both the same scale and "
                    "translate (layer.scale, layer.translate) to compare them")
    return None


def file_figures(layer: Any) -> str:
    """The whole file's figures of a ``.sci`` layer (from its header), as lines under the ROI's."""
    sci = getattr(layer, "metadata", {}).get("sci")
    if not sci:
        return ""
    psnr = sci.get("psnr")
    shown = f"{psnr:.2f} dB" if psnr is not None and math.isfinite(psnr) else "not stored"
    return (f"\n\n{layer.name} (whole file): {sci['file_bytes']} bytes\n{sci['bpv']:.4f} BPV, "
            f"ratio {sci['ratio']:.0f}:1\nPSNR {shown}, {sci['blocks']} blocks")


def difference_data(original: Any, decoded: Any) -> Any:
    """``original - decoded`` as float32, lazily, in the decoded layer's chunks (plane by plane)."""
    import dask.array as da

    lazy = decoded.data if isinstance(decoded.data, da.Array) else da.from_array(np.asarray(decoded.data))
    source = da.from_array(np.asarray(original.data), chunks=lazy.chunks)
    return source.astype(np.float32) - lazy.astype(np.float32)


class CompareWidget(QWidget):
    """Pick the original and the decoded layer; *Compare* shows them side by side (grid mode, one
    camera and slice) with an optional difference layer, and reports PSNR, SSIM and the largest error
    inside the ROI rectangle on the current plane, updated as the ROI moves or the slice changes."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.original = image_picker(viewer, "original")
        self.decoded = image_picker(viewer, "decoded")
        self.side_by_side = CheckBox(label="side by side (grid)", value=True)
        self.difference = CheckBox(label="difference layer", value=False)
        self.compare_button = PushButton(text="Compare")
        self.metrics = status_label()
        self.status = self.metrics  # where errors in callbacks are reported
        self.form = Container(widgets=[self.original, self.decoded, self.side_by_side, self.difference,
                                       self.compare_button])
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.metrics.native)
        layout.addStretch()
        self.setMinimumWidth(MIN_WIDTH)
        self.grid = SideBySide(viewer)
        self.roi: Any = None
        self.difference_layer: Any = None
        self.last: RoiMetrics | None = None
        self._range = 1.0
        self._pick_defaults()
        self.compare_button.changed.connect(self.compare)
        self.side_by_side.changed.connect(self._arrange)
        self.difference.changed.connect(self._arrange)
        viewer.dims.events.current_step.connect(self.update_metrics)
        viewer.layers.events.inserted.connect(self._pick_defaults)

    def reset_choices(self, event: Any = None) -> None:
        """napari calls this when layers change (keeps the layer lists current)."""
        self.form.reset_choices()

    def _pick_defaults(self, event: Any = None) -> None:
        """Preselect a decoded ``.sci`` layer and an original of the same shape, when there are some."""
        self.form.reset_choices()
        decoded = [c for c in self.decoded.choices if "sci" in c.metadata]
        if decoded:
            self.decoded.value = decoded[-1]
            same = [c for c in self.original.choices
                    if "sci" not in c.metadata and c.data.shape == decoded[-1].data.shape]
            same.sort(key=lambda c: misalignment(c, decoded[-1]) is not None)  # aligned ones first
            if same:
                self.original.value = same[0]

    def _ensure_roi(self) -> Any:
        """The ROI layer, created over the middle half of the plane if missing.

        It is a 2D Shapes layer over the last two axes, so napari shows it on every slice."""
        if self.roi is not None and self.roi in self.viewer.layers:
            return self.roi
        layer = self.original.value
        shape = layer.data.shape
        (y0, y1), (x0, x1) = [(shape[a] * 0.25, shape[a] * 0.75) for a in _plane_axes(len(shape))]
        corners = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
        self.roi = self.viewer.add_shapes(corners, shape_type="rectangle", name=ROI_NAME,
                                          edge_color="#ffd54f", face_color="transparent",
                                          edge_width=max(shape[-1] / 100, 1.5),
                                          scale=layer.scale[-2:], translate=layer.translate[-2:])
        self.roi.events.data.connect(self.update_metrics)
        return self.roi

    def _ensure_difference(self) -> Any:
        """The difference layer for the current pair, replaced in place when the pair changes."""
        original, decoded = self.original.value, self.decoded.value
        data = difference_data(original, decoded)
        limit = self._difference_limit(data)
        if self.difference_layer is not None and self.difference_layer in self.viewer.layers:
            self.difference_layer.data = data
            self.difference_layer.contrast_limits = (-limit, limit)
        else:
            self.difference_layer = self.viewer.add_image(
                data, name=f"difference ({original.name} − {decoded.name})",
                colormap=DIFFERENCE_COLORMAP, contrast_limits=(-limit, limit), scale=original.scale,
                translate=original.translate)
        return self.difference_layer

    @reports_errors
    def _difference_limit(self, data: Any) -> float:
        """A symmetric colour range of ± the 99th percentile of |error| on the shown plane: the largest
        errors would wash typical ones out (p50 = 10, p99 = 239 of ±1002 on a CT)."""
        plane = tuple(int(np.clip(np.rint(c), 0, n - 1)) for c, n in
                      zip(self.original.value.world_to_data(self.viewer.dims.point)[:-2],
                          data.shape[:-2], strict=False))
        errors = np.abs(np.asarray(data[plane]))
        limit = float(np.percentile(errors, DIFFERENCE_PERCENTILE)) if errors.size else 0.0
        return limit if limit > 0 else max(self._range * 1e-3, 1e-6)

    def compare(self) -> None:
        """Set up the ROI, the view and the difference layer for the chosen pair, then measure."""
        from napari.utils.notifications import show_error

        original, decoded = self.original.value, self.decoded.value
        if original is None or decoded is None or original is decoded:
            show_error("napari-sci: choose two different image layers to compare")
            return
        if original.data.shape != decoded.data.shape:
            show_error(f"napari-sci: the layers differ in shape: {original.data.shape} vs "
                       f"{decoded.data.shape}")
            return
        problem = misalignment(original, decoded)
        if problem is not None:
            self.metrics.value = problem
            show_error(f"napari-sci: {problem}")
            return
        self._range = data_range(decoded, original)
        roi = self._ensure_roi()
        self._arrange()
        self.viewer.layers.selection.active = roi  # ready to be dragged or resized
        roi.mode = "select"
        self.update_metrics()

    @reports_errors
    def _arrange(self, event: Any = None) -> None:
        """Apply the side-by-side and difference choices."""
        if self.roi is None or self.roi not in self.viewer.layers:
            return
        panels = [self.original.value, self.decoded.value]
        if self.difference.value:
            panels.append(self._ensure_difference())
        elif self.difference_layer is not None and self.difference_layer in self.viewer.layers:
            self.viewer.layers.remove(self.difference_layer)
            self.difference_layer = None
        if self.side_by_side.value:
            self.grid.enable(self.roi, panels)
        else:
            self.grid.disable()
        self.viewer.layers.selection.active = self.roi  # not a copy: the ROI, ready to be moved
        self.roi.mode = "select"

    def measure(self) -> RoiMetrics | None:
        """PSNR, SSIM and max error inside the ROI on the current plane (None without an ROI)."""
        original, decoded = self.original.value, self.decoded.value
        if self.roi is None or self.roi not in self.viewer.layers or not len(self.roi.data):
            return None
        if original is None or decoded is None or original.data.shape != decoded.data.shape:
            return None
        if misalignment(original, decoded) is not None:
            return None
        shape = original.data.shape
        axes = _plane_axes(len(shape))
        point = np.asarray(self.viewer.dims.point[-len(shape):], dtype=float)
        corners = []
        for vertex in self.roi.data[0]:
            point[-2:] = self.roi.data_to_world(vertex)[-2:]
            corners.append(original.world_to_data(point)[-2:])
        index = plane_index(original.world_to_data(self.viewer.dims.point[-len(shape):]), shape, axes,
                            rectangle_box(np.asarray(corners), shape, axes))
        return roi_metrics(np.asarray(original.data[index]), np.asarray(decoded.data[index]),
                           self._range)

    @reports_errors
    def update_metrics(self, event: Any = None) -> None:
        """Recompute the ROI figures and show them."""
        self.last = self.measure()
        if self.last is None:
            return
        m = self.last
        psnr = "inf" if math.isinf(m.psnr) else f"{m.psnr:.2f}"
        self.metrics.value = (f"ROI on this plane: {m.voxels} voxels\nPSNR {psnr} dB\n"
                              f"SSIM {m.ssim:.4f}\nmax error {m.max_error:g}"
                              + file_figures(self.decoded.value))
