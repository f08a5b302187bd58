"""Partition widget: the ILP runs in a worker, the overlay is drawn (and replaced in place), and it
renders in both the 2D slice and the 3D view."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sci._napari.widgets.partition import PartitionWidget
from napari_sci.core.codec import plan_blocks


def _coloured(rgba: np.ndarray) -> np.ndarray:
    """Pixels with clear colour (the image is grey; the overlay is coloured)."""
    rgb = rgba[..., :3].astype(int)
    return (rgb.max(axis=-1) - rgb.min(axis=-1)) > 40


@pytest.fixture
def widget(make_napari_viewer, tiny):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(tiny, name="tiny", scale=(2.0, 1.0, 1.0))
    widget = PartitionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = "siren"  # SIREN blocks: several per crop, each with its network's size
    widget.budget.amount.value = 4.0  # enough bytes for several networks on this small crop
    widget.depth.value = 2
    return widget


def test_overlay_matches_plan_and_is_replaced_in_place(widget, wait_for, tiny):
    viewer = widget.viewer
    assert widget.image.value is viewer.layers["tiny"]
    widget.run()
    wait_for(widget.job)
    labels, edges = widget.overlay.labels, widget.overlay.edges
    expected = plan_blocks(tiny, widget.config())
    n = len(expected.partition.blocks)
    assert n > 1  # so that re-running with a_max 1 visibly replaces the overlay
    assert widget.table.rowCount() == n
    assert widget.status.value.startswith(f"{n} blocks")
    inside = labels.features[labels.features["part"] == "inside"]
    assert list(inside["D"]) == [b.concentration for b in expected.partition.blocks]
    assert list(inside["params"]) == list(expected.params)
    assert {"size", "D", "params", "share"} <= set(inside.columns)
    assert edges.data.shape == (12 * n, 2, 3)
    np.testing.assert_allclose(labels.scale, (2.0, 1.0, 1.0))
    assert "D:" in labels.get_status(labels.data_to_world((8, 20, 20)))["coordinates"]

    widget.max_blocks.value = 1
    widget.run()
    wait_for(widget.job)
    assert widget.overlay.labels is labels
    assert widget.overlay.edges is edges
    assert len(viewer.layers) == 3
    assert edges.data.shape == (12, 2, 3)
    assert widget.table.rowCount() == 1


def test_overlay_draws_in_2d_and_3d(widget, wait_for):
    viewer = widget.viewer
    widget.depth.value = 1  # the ILP then keeps the root or takes all 8 octants; here, the octants
    widget.budget.amount.value = 4.0  # enough bytes for 8 networks
    widget.max_blocks.value = 8
    widget.run()
    wait_for(widget.job)
    labels, edges = widget.overlay.labels, widget.overlay.edges
    assert len(labels.features) == 2 * 8
    viewer.reset_view()
    with_overlay = viewer.screenshot(canvas_only=True, flash=False)
    labels.visible = False
    without = viewer.screenshot(canvas_only=True, flash=False)
    labels.visible = True
    assert not _coloured(without).any()
    lines = _coloured(with_overlay)
    assert 0.01 < lines.mean() < 0.3  # outlines, not a wash over the canvas
    # the four quadrants of the slice: a coloured line across the middle each way
    rows, cols = np.nonzero(lines)
    middle_row = lines[(rows.min() + rows.max()) // 2 - 3: (rows.min() + rows.max()) // 2 + 4]
    middle_col = lines[:, (cols.min() + cols.max()) // 2 - 3: (cols.min() + cols.max()) // 2 + 4]
    assert middle_row.any(axis=0).sum() > 0.9 * (cols.max() - cols.min())
    assert middle_col.any(axis=1).sum() > 0.9 * (rows.max() - rows.min())

    viewer.dims.ndisplay = 3
    assert edges.visible
    assert not labels.visible
    three_d = viewer.screenshot(canvas_only=True, flash=False)
    assert _coloured(three_d).sum() > 300  # the wireframe
    edges.visible = False
    assert not _coloured(viewer.screenshot(canvas_only=True, flash=False)).any()
    edges.visible = True
    viewer.dims.ndisplay = 2
    assert labels.visible
    assert not edges.visible


def test_colour_by_parameter_share(widget, wait_for):
    widget.budget.amount.value = 4.0
    widget.run()
    wait_for(widget.job)
    before = dict(widget.overlay.labels.colormap.color_dict)
    widget.colour_by.value = "parameter share"
    after = widget.overlay.labels.colormap.color_dict
    assert any(not np.allclose(before[k], after[k]) for k in before if k)


def test_errors_become_notifications(widget, wait_for, monkeypatch):
    import napari.utils.notifications as notifications

    messages: list[str] = []
    monkeypatch.setattr(notifications, "show_error", messages.append)
    widget.budget.amount.value = 0.01
    widget.run()
    wait_for(widget.job)
    assert len(messages) == 1
    assert "too small" in messages[0]
    assert "Traceback" not in messages[0]
    assert widget.overlay.labels is None


def test_partition_again_after_a_visit_to_3d(widget, wait_for):
    """Partition, look in 3D, back to 2D, partition with another budget: the overlay and table follow
    (the hidden wireframe used to keep stale per-edge colours and fail with an IndexError)."""
    viewer = widget.viewer
    widget.max_blocks.value = 8
    widget.run_button.native.click()
    wait_for(widget.job)
    first = widget.table.rowCount()
    viewer.dims.ndisplay = 3
    viewer.dims.ndisplay = 2
    for max_blocks in (1, 8, 3):
        widget.max_blocks.value = max_blocks
        widget.run_button.native.click()
        wait_for(widget.job)
        n = widget.table.rowCount()
        assert widget.status.value.startswith(f"{n} block"), widget.status.value
        assert widget.overlay.edges.data.shape == (12 * n, 2, 3)
        assert len(widget.overlay.edges.edge_color) == 12 * n
        assert widget.overlay.labels.visible
        assert not widget.overlay.edges.visible
    assert first > 1
    viewer.dims.ndisplay = 3  # and the wireframe still draws the last partition
    assert widget.overlay.edges.visible
    assert len(widget.overlay.edges.edge_color) == 12 * n


def test_a_failing_callback_reaches_the_status_line(widget, wait_for, monkeypatch):
    """An unexpected error while drawing the result is reported, and the widget stays usable."""
    import napari.utils.notifications as notifications

    messages: list[str] = []
    monkeypatch.setattr(notifications, "show_error", messages.append)

    def broken(*args, **kwargs):
        raise IndexError("index 366 is out of bounds for axis 0 with size 348")

    monkeypatch.setattr(widget.overlay, "show", broken)
    widget.run_button.native.click()
    wait_for(widget.job)
    assert "index 366 is out of bounds" in widget.status.value
    assert "partitioning" not in widget.status.value
    assert messages
    assert "index 366" in messages[0]
    assert widget.run_button.enabled


def test_the_grid_model_previews_its_tiles(make_napari_viewer, wait_for, mri):
    viewer = make_napari_viewer()
    volume = np.tile(mri, (2, 2, 2))  # 64×80×72: its 8 octants are tiles of format 3's size
    viewer.add_image(volume, name="mri")
    widget = PartitionWidget(viewer)
    assert widget.model.value == "grid"  # main's default model
    widget.budget.amount.value = 1.0
    widget.depth.value = 1
    widget.run()
    wait_for(widget.job)
    expected = plan_blocks(volume, widget.config())
    n = len(expected.partition.blocks)
    assert widget.table.rowCount() == n
    assert all(b.voxels >= 1 << 15 for b in expected.partition.blocks)  # format 3's smallest tile
    assert widget.status.value.startswith(f"{n} latent-grid tile")
    assert "one λ" in widget.status.value
