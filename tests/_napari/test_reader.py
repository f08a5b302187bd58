"""The reader: accepts .sci files by suffix + magic, refuses everything else without raising, and opens
files as lazily decoded image layers."""

from __future__ import annotations

import math
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import napari_sci
from napari_sci._napari import _views
from napari_sci._napari._layer import tile_chunks
from napari_sci._napari._reader import get_reader, read_sci
from napari_sci.core.lazy import SciArray, open_sci

GOLDEN = Path(__file__).resolve().parents[1] / "data"


def test_accepts_a_sci_file(sci_file):
    assert get_reader(str(sci_file)) is read_sci
    assert get_reader(sci_file) is read_sci
    assert get_reader([str(sci_file), str(sci_file)]) is read_sci


@pytest.mark.parametrize("kind", ["tif", "text-as-sci", "empty-sci", "missing", "folder", "mixed", "none"])
def test_rejects_foreign_paths_without_raising(tmp_path, sci_file, kind):
    foreign = {
        "tif": tmp_path / "volume.tif",
        "text-as-sci": tmp_path / "notes.sci",
        "empty-sci": tmp_path / "empty.sci",
        "missing": tmp_path / "missing.sci",
        "folder": tmp_path / "folder.sci",
    }
    foreign["tif"].write_bytes(sci_file.read_bytes())  # right bytes, wrong suffix
    foreign["text-as-sci"].write_text("hello, not a volume\n")
    foreign["empty-sci"].write_bytes(b"")
    foreign["folder"].mkdir()
    path = {"mixed": [str(sci_file), str(foreign["tif"])], "none": None}.get(kind, foreign.get(kind))
    assert get_reader(path) is None


def test_open_gives_a_lazy_scaled_layer_with_metadata(make_napari_viewer, sci_file, monkeypatch):
    decoded_boxes = []
    original_box = SciArray._box

    def counting_box(self, box):
        decoded_boxes.append(box)
        return original_box(self, box)

    monkeypatch.setattr(SciArray, "_box", counting_box)
    monkeypatch.setattr(_views, "PREFETCH_BYTES", 0)  # no decoding ahead for a 3D view here
    viewer = make_napari_viewer()
    [layer] = viewer.open(sci_file, plugin="napari-sci")
    array = open_sci(sci_file)
    assert layer.name == "tiny"
    assert isinstance(layer.data, da.Array)
    assert layer.data.shape == (16, 48, 48)
    np.testing.assert_allclose(layer.scale, (2.0, 1.0, 1.0))
    assert tuple(layer.contrast_limits) == (array.header.value_min, array.header.value_max)
    meta = layer.metadata["sci"]
    assert meta["bpv"] == pytest.approx(array.bpv)
    assert meta["ratio"] == pytest.approx(array.ratio)
    assert meta["blocks"] == len(array.header.blocks)
    assert math.isfinite(meta["psnr"])
    assert meta["psnr"] == pytest.approx(array.header.psnr)
    assert meta["format"] == 2
    assert meta["model"] == "siren"
    # only the displayed plane(s) were decoded, never the whole volume
    assert decoded_boxes
    assert all(box[0][1] - box[0][0] == 1 for box in decoded_boxes)
    assert len({box[0] for box in decoded_boxes}) <= 2
    np.testing.assert_array_equal(np.asarray(layer.data[8]), array[8])


def test_a_latent_grid_file_opens_with_its_model_named(make_napari_viewer):
    [layer] = make_napari_viewer().open(GOLDEN / "golden_v3_context.sci", plugin="napari-sci")
    meta = layer.metadata["sci"]
    assert (meta["format"], meta["model"]) == (3, "grid")
    np.testing.assert_array_equal(np.asarray(layer.data), napari_sci.decode(GOLDEN / "golden_v3_context.sci"))


@pytest.mark.parametrize("version", [1, 2])
def test_reads_every_format_version(version):
    """The committed golden files of each format open through the reader, decoded as the core decodes."""
    path = GOLDEN / f"golden_v{version}.sci"
    assert get_reader(str(path)) is read_sci
    [(data, kwargs, kind)] = read_sci(str(path))
    assert kind == "image"
    assert kwargs["metadata"]["sci"]["format"] == version
    expected = np.load(GOLDEN / f"golden_v{version}_decoded.npy")
    np.testing.assert_array_equal(np.asarray(data), expected)


def test_chunks_are_the_tiles_and_any_plane_decodes_only_itself(make_napari_viewer, sci_file, monkeypatch):
    """Seen along another axis, a plane decodes that plane of the tiles it crosses, not whole axial
    planes (the dask chunks used to be axial planes: a change of axis decoded the whole volume)."""
    boxes = []
    original_box = SciArray._box
    monkeypatch.setattr(SciArray, "_box", lambda self, box: boxes.append(box) or original_box(self, box))
    monkeypatch.setattr(_views, "PREFETCH_BYTES", 0)
    viewer = make_napari_viewer()
    [layer] = viewer.open(sci_file, plugin="napari-sci")
    array = open_sci(sci_file)
    assert layer.data.chunks == tile_chunks(array.contents)
    assert layer.data.numblocks != (16, 1, 1)
    boxes.clear()
    viewer.dims.order = (2, 0, 1)  # look along x
    assert boxes
    assert all(box[2][1] - box[2][0] == 1 for box in boxes)  # one x plane, tile by tile
    x = viewer.dims.current_step[2]
    np.testing.assert_array_equal(np.asarray(layer.data[:, :, x]), napari_sci.decode(sci_file)[:, :, x])


def test_a_3d_view_draws_from_tiles_decoded_ahead(make_napari_viewer, sci_file, qtbot, monkeypatch):
    """Opening a .sci file decodes its tiles in a worker (the canvas says so in 3D); the switch to 3D
    then decodes nothing in the event loop, and shows the same voxels as decode()."""
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(sci_file, plugin="napari-sci")
    watcher = _views.watch_3d(viewer)
    assert watcher.jobs  # started on opening
    viewer.dims.ndisplay = 3
    assert _views.text_overlay(viewer).visible
    assert f"decoding {layer.name}" in _views.text_overlay(viewer).text
    qtbot.waitUntil(lambda: not watcher.jobs, timeout=30_000)
    assert not _views.text_overlay(viewer).visible  # restored
    viewer.dims.ndisplay = 2
    decoded = []
    original_box = SciArray._box

    def counting_box(self, box):
        decoded.append(box not in self._cache)
        return original_box(self, box)

    monkeypatch.setattr(SciArray, "_box", counting_box)
    viewer.dims.ndisplay = 3  # the 3D round trip
    assert decoded
    assert not any(decoded), "the 3D view decoded tiles in the event loop"
    np.testing.assert_array_equal(np.asarray(layer._data_view), napari_sci.decode(sci_file))
    viewer.dims.ndisplay = 2
    assert layer._data_view.ndim == 2


def test_a_damaged_file_says_why_in_one_sentence(make_napari_viewer, sci_file, tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    messages: list[str] = []
    monkeypatch.setattr(notifications, "show_error", messages.append)
    damaged = tmp_path / "damaged.sci"
    damaged.write_bytes(sci_file.read_bytes()[:-10])
    viewer = make_napari_viewer()
    assert viewer.open(damaged, plugin="napari-sci") == []
    [message] = messages
    assert message.startswith("napari-sci: cannot open damaged.sci: the file is ")
    assert message.endswith("it is truncated")
    assert "\n" not in message
    assert len(viewer.layers) == 0


def test_the_target_field_keeps_small_values(make_napari_viewer):
    from napari_sci._napari.widgets.compress import CompressWidget

    widget = CompressWidget(make_napari_viewer())
    for value in (0.025, 0.005, 0.0125):
        widget.budget.amount.native.setValue(value)  # as typed in the field
        assert widget.budget.settings() == {"bpv": value}
    assert widget.config().budget.bpv == 0.0125
