"""The physical voxel size: from an ImageJ/OME TIFF into the layer, from the layer into the .sci (Compress
widget and File ▸ Save), and Compare refusing layers that would not line up."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tifffile

import napari_sci
from napari_sci._napari import _writer
from napari_sci._napari._spacing import file_spacing
from napari_sci._napari.widgets.compare import CompareWidget
from napari_sci._napari.widgets.compress import CompressWidget
from napari_sci.core.volume_files import write_volume

SPACING = (2.0, 0.5, 0.5)


@pytest.fixture
def tif(tmp_path, tiny):
    path = tmp_path / "ct.tif"
    write_volume(path, tiny, spacing=SPACING)  # ImageJ TIFF, as the CLI writes and reads it
    return path


def test_reads_imagej_and_ome_spacing_and_ignores_plain_tiffs(tif, tmp_path, tiny):
    assert file_spacing(tif, 3) == SPACING
    ome = tmp_path / "cells.ome.tif"
    tifffile.imwrite(ome, tiny, metadata={"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeY": 0.25,
                                          "PhysicalSizeX": 0.25})
    assert file_spacing(ome, 3) == (3.0, 0.25, 0.25)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, tiny, resolution=(72.0, 72.0))  # a 72 dpi tag is no voxel size
    assert file_spacing(plain, 3) is None
    broken = tmp_path / "broken.tif"
    broken.write_bytes(tif.read_bytes()[:100])
    assert file_spacing(broken, 3) is None
    assert file_spacing(tmp_path / "x.npy", 3) is None


def test_a_tiff_keeps_its_voxel_size_through_the_compress_widget(make_napari_viewer, tif, tmp_path,
                                                                 wait_for):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tif))  # napari's own TIFF reader drops the voxel size...
    np.testing.assert_allclose(layer.scale, (1, 1, 1))
    widget = CompressWidget(viewer)
    viewer.window.add_dock_widget(widget)
    np.testing.assert_allclose(layer.scale, SPACING)  # ...the plugin restores it
    [again] = viewer.open(str(tif))  # also for a TIFF opened while the widget is there
    np.testing.assert_allclose(again.scale, SPACING)
    scaled = viewer.add_image(np.zeros((4, 8, 8), np.uint8), scale=(3.0, 1.0, 1.0))
    np.testing.assert_allclose(scaled.scale, (3, 1, 1))  # a scale set otherwise is left alone

    widget.image.value = layer
    widget.budget.amount.value = 1.0
    widget.steps.value = 20
    widget.device.value = "cpu"
    widget.output.value = tmp_path / "out.sci"
    widget.run_button.native.click()
    wait_for(widget.job)
    assert napari_sci.open_sci(tmp_path / "out.sci").header.spacing == SPACING
    np.testing.assert_allclose(viewer.layers["out"].scale, SPACING)


def test_file_save_stores_the_files_voxel_size(make_napari_viewer, tif, tmp_path, monkeypatch):
    monkeypatch.setattr(_writer, "DEFAULTS", replace(_writer.DEFAULTS, steps=10, device="cpu"))
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tif))  # no plugin widget open: the layer stays at 1 × 1 × 1
    path = tmp_path / "saved.sci"
    assert viewer.layers.save(str(path), plugin="napari-sci") == [str(path)]
    assert napari_sci.open_sci(path).header.spacing == SPACING
    layer.scale = (4.0, 1.0, 1.0)  # a scale the user gave wins
    viewer.layers.save(str(path), plugin="napari-sci")
    assert napari_sci.open_sci(path).header.spacing == (4.0, 1.0, 1.0)


def test_compare_refuses_layers_with_different_voxel_sizes(make_napari_viewer, tiny, sci_file,
                                                           monkeypatch):
    import napari.utils.notifications as notifications

    messages: list[str] = []
    monkeypatch.setattr(notifications, "show_error", messages.append)
    viewer = make_napari_viewer()
    viewer.add_image(tiny, name="tiny")  # 1 × 1 × 1, while the file stores 2 × 1 × 1
    viewer.open(sci_file, plugin="napari-sci")
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.compare_button.native.click()
    [message] = messages
    assert "different voxel sizes: 1 × 1 × 1 vs 2 × 1 × 1" in message
    assert not viewer.canvas.grid.enabled
    assert widget.last is None
    viewer.layers["tiny"].scale = (2.0, 1.0, 1.0)
    widget.compare_button.native.click()
    assert len(messages) == 1
    assert widget.last is not None
