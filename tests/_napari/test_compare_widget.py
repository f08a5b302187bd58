"""Compare widget: side by side in grid mode (one camera, one slice), the ROI in every panel, a lazy
difference layer, and ROI metrics from core.metrics that follow the ROI and the slice."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import napari_sci
from napari_sci._napari.widgets.compare import CompareWidget
from napari_sci.core import metrics


@pytest.fixture
def widget(make_napari_viewer, tiny, sci_file, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(tiny, name="tiny", scale=(2.0, 1.0, 1.0))
    viewer.add_image(np.zeros((8, 8), np.uint8), name="unrelated")
    viewer.open(sci_file, plugin="napari-sci")
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    qtbot.wait(50)  # let the canvas take its size next to the dock before Compare fits the view
    return widget


def _expected(tiny, sci_file, z, rows, cols):
    decoded = napari_sci.decode(sci_file)
    a, b = tiny[z, rows, cols], decoded[z, rows, cols]
    span = float(np.ptp(tiny))
    return metrics.psnr(a, b, span), metrics.ssim(a, b, span), metrics.max_abs_error(a, b)


def test_defaults_pick_the_decoded_layer_and_its_original(widget):
    assert widget.decoded.value.name == "tiny [1]" or "sci" in widget.decoded.value.metadata
    assert widget.original.value.name == "tiny"


def test_side_by_side_roi_metrics_follow_roi_and_slice(widget, tiny, sci_file):
    viewer = widget.viewer
    widget.compare()
    assert viewer.canvas.grid.enabled
    assert viewer.canvas.grid.shape == (1, 2)
    assert viewer.canvas.grid.stride == -2
    assert not viewer.layers["unrelated"].visible
    top = [layer.name for layer in viewer.layers][::-1]
    assert top[:4] == ["ROI", "tiny", f"ROI ({widget.decoded.value.name})", widget.decoded.value.name]

    z = viewer.dims.current_step[0]
    expected = _expected(tiny, sci_file, z, slice(12, 37), slice(12, 37))  # middle half of 48
    assert widget.last.voxels == 25 * 25
    assert (widget.last.psnr, widget.last.ssim, widget.last.max_error) == pytest.approx(expected)
    assert "PSNR" in widget.metrics.value

    widget.roi.data = [np.array([[2.0, 5.0], [2.0, 20.0], [30.0, 20.0], [30.0, 5.0]])]
    assert widget.last.voxels == 29 * 16
    assert widget.grid.copies[0].data[0].tolist() == widget.roi.data[0].tolist()  # the copy follows
    expected = _expected(tiny, sci_file, z, slice(2, 31), slice(5, 21))
    assert (widget.last.psnr, widget.last.ssim, widget.last.max_error) == pytest.approx(expected)

    viewer.dims.set_current_step(0, 3)
    expected = _expected(tiny, sci_file, 3, slice(2, 31), slice(5, 21))
    assert (widget.last.psnr, widget.last.ssim, widget.last.max_error) == pytest.approx(expected)

    widget.side_by_side.value = False
    assert not viewer.canvas.grid.enabled
    assert viewer.layers["unrelated"].visible
    assert widget.grid.copies == []


def test_difference_layer_is_lazy_and_in_its_own_panel(widget, tiny, sci_file):
    viewer = widget.viewer
    widget.compare()
    widget.difference.value = True  # ticked after Compare, as a user would
    layer = widget.difference_layer
    assert isinstance(layer.data, da.Array)
    np.testing.assert_allclose(np.asarray(layer.data[5]),
                               tiny[5].astype(np.float32) - napari_sci.decode(sci_file)[5])
    assert viewer.canvas.grid.shape == (1, 3)
    z = viewer.dims.current_step[0]
    errors = np.abs(tiny[z].astype(np.float32) - napari_sci.decode(sci_file)[z])
    limit = float(np.percentile(errors, 99))  # robust: not ±max, not a share of the data range
    assert tuple(layer.contrast_limits) == pytest.approx((-limit, limit))
    assert layer.colormap.name == "berlin"  # diverging, dark at zero
    assert viewer.layers.selection.active is widget.roi  # the ROI, not a copy, ready to be moved
    assert widget.roi.mode == "select"
    assert "(whole file)" in widget.metrics.value
    assert "BPV" in widget.metrics.value
    widget.difference.value = False
    assert widget.difference_layer is None
    assert viewer.canvas.grid.shape == (1, 2)


def test_panels_render_side_by_side(widget, qtbot):
    viewer = widget.viewer
    widget.compare()
    qtbot.wait(100)  # napari lays out the grid's panels on the next turn of the event loop
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    half = shot.shape[1] // 2
    left, right = shot[:, :half], shot[:, half:]
    bright = shot.sum(axis=-1) > 60
    # both panels show brain tissue, and the ROI rectangle (yellow) is drawn in each
    assert bright[:, :half].mean() > 0.1
    assert bright[:, half:].mean() > 0.1
    for panel in (left, right):
        yellow = (panel[..., 0] > 180) & (panel[..., 1] > 150) & (panel[..., 2] < 120)
        assert yellow.sum() > 100


def test_refuses_mismatched_layers(widget, monkeypatch):
    import napari.utils.notifications as notifications

    messages: list[str] = []
    monkeypatch.setattr(notifications, "show_error", messages.append)
    widget.original.value = widget.viewer.layers["unrelated"]
    widget.compare()
    assert messages
    assert "differ in shape" in messages[0]
    assert not widget.viewer.canvas.grid.enabled
