"""Take the screenshots of docs/usage.md: every napari-sci widget working on real volumes.

Each scene drives the plugin the way a person clicks through it (File ▸ Open Sample, Plugins ▸ napari-sci
▸ widget, the widget's buttons, ``viewer.open(..., plugin="napari-sci")`` as drag-and-drop does) and
saves the whole napari window as a PNG. Headless machines get their own Xvfb (PyVirtualDisplay, which
pytest-xvfb installs). Fits are short (a few hundred steps on ~1 M voxel crops) so that the whole run
takes a few minutes on two CPU cores::

    nice -n 10 .venv/bin/python docs/screenshots.py            # writes docs/images/*.png
    .venv/bin/python docs/screenshots.py --data ../shared/data --out docs/images --steps 300
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
WINDOW = (1500, 940)
CT_NAME = "ct_aorta_totalseg.tif"
CT_CROP = (slice(50, 114), slice(None), slice(None))  # 64 slices through the heart and the aorta
CT_WINDOW = (824.0, 1724.0)  # HU -200..700 (stored as HU + 1024): soft tissue and contrast-filled vessels


@dataclass(frozen=True)
class Settings:
    data: Path
    out: Path
    work: Path
    steps: int


@contextlib.contextmanager
def display() -> Iterator[None]:
    """An X display for Qt: the current one, or a private Xvfb when there is none."""
    if os.environ.get("DISPLAY"):
        yield
        return
    from pyvirtualdisplay import Display

    with Display(visible=False, size=(WINDOW[0] + 100, WINDOW[1] + 100)):
        yield


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Process Qt events until ``condition()`` holds (the widgets work in napari worker threads)."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    """Let napari finish laying out and drawing (grid panels, docks, the plot's throttled redraw)."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: False, seconds)


def new_viewer(title: str):  # type: ignore[no-untyped-def]
    import napari

    viewer = napari.Viewer(title=title, show=True)
    viewer.window.resize(*WINDOW)
    return viewer


def save(viewer, settings: Settings, name: str, fit: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """Save the whole window; ``fit`` first fits the view to the canvas as the dock left it."""
    settle()
    if fit:
        viewer.reset_view()
        settle(0.2)
    path = settings.out / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path


def ct_crop(settings: Settings) -> tuple[np.ndarray, tuple[float, ...]]:
    """64×126×120 uint16 crop of the TotalSegmentator CT (1.5 mm voxels)."""
    return np.ascontiguousarray(tifffile.imread(settings.data / CT_NAME)[CT_CROP]), (1.5, 1.5, 1.5)


def partition_scene(settings: Settings) -> None:
    """Sample → Partition: the block tree over the Colin27 crop, in a 2D slice and in 3D."""
    viewer = new_viewer("napari-sci: partition")
    viewer.open_sample("napari-sci", "colin27")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sci", "Partition (block tree)")
    widget.model.value = "siren"  # the screenshots predate the grid default; they show SIREN blocks
    widget.budget.amount.value = 0.25
    widget.run()
    wait_until(lambda: not widget.job.running, 300)
    viewer.dims.set_current_step(0, 40)  # through both octree levels
    save(viewer, settings, "partition_2d.png")
    viewer.dims.ndisplay = 3
    image = viewer.layers["Colin27 T1 crop"]
    image.rendering, image.opacity = "attenuated_mip", 0.6
    viewer.reset_view()
    viewer.scene.camera.angles = (-10.0, 30.0, 60.0)
    viewer.scene.camera.zoom *= 0.8
    save(viewer, settings, "partition_3d.png", fit=False)
    viewer.close()


def compress_scene(settings: Settings, out: Path) -> None:
    """Compress with the live plot: mid-fit (after the quantised fine-tuning began) and done."""
    volume, spacing = ct_crop(settings)
    viewer = new_viewer("napari-sci: compress")
    viewer.add_image(volume, name="CT crop", scale=spacing, contrast_limits=CT_WINDOW)
    viewer.dims.set_current_step(0, 30)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sci", "Compress")
    widget.model.value = "siren"  # as the screenshots show it (its fine-tuning mark on the plot)
    widget.budget.amount.value = 0.25
    widget.steps.value = settings.steps
    widget.output.value = out
    widget.overwrite.value = True
    widget.run()
    marked = lambda: widget.plot.marks and widget.plot.steps[-1] > widget.plot.marks[0][0]  # noqa: E731
    wait_until(lambda: bool(marked()) or not widget.running, 900)
    widget.plot.redraw()
    save(viewer, settings, "compress_live.png")
    wait_until(lambda: not widget.running, 900)
    viewer.layers[out.stem].contrast_limits = CT_WINDOW
    save(viewer, settings, "compress_done.png")
    viewer.close()


def open_scene(settings: Settings, path: Path) -> None:
    """Drag the .sci back in: a lazily decoded layer with its spacing, range and file figures."""
    viewer = new_viewer("napari-sci: a .sci file as a layer")
    [layer] = viewer.open(path, plugin="napari-sci")  # what dropping the file and picking napari-sci does
    layer.contrast_limits = CT_WINDOW
    viewer.dims.set_current_step(0, 40)
    sci = layer.metadata["sci"]
    overlay = viewer.canvas.overlays.text
    overlay.visible, overlay.font_size = True, 11
    overlay.text = (  # shown by this script: the reader puts these in layer.metadata["sci"]
        f"layer.metadata['sci']: {sci['file_bytes']} bytes, {sci['bpv']:.3f} BPV, ratio "
        f"{sci['ratio']:.0f}:1, PSNR {sci['psnr']:.2f} dB, format {sci['format']}, {sci['blocks']} blocks")
    save(viewer, settings, "sci_layer.png")
    viewer.close()


def compare_scene(settings: Settings, path: Path) -> None:
    """Compare: original, decoded and difference side by side; ROI metrics on the current slice."""
    volume, spacing = ct_crop(settings)
    viewer = new_viewer("napari-sci: compare")
    viewer.add_image(volume, name="CT crop", scale=spacing, contrast_limits=CT_WINDOW)
    [decoded] = viewer.open(path, plugin="napari-sci")
    decoded.contrast_limits = CT_WINDOW
    _, widget = viewer.window.add_plugin_dock_widget("napari-sci", "Compare")
    widget.difference.value = True
    settle()
    widget.compare()
    widget.roi.data = [np.array([[40.0, 30.0], [40.0, 80.0], [90.0, 80.0], [90.0, 30.0]])]
    viewer.dims.set_current_step(0, 36)
    save(viewer, settings, "compare_roi.png", fit=False)  # Compare fitted the grid
    viewer.close()


def save_scene(settings: Settings) -> None:
    """File ▸ Save as .sci: the fit runs under a progress dialog with Cancel while napari stays live."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QProgressDialog, QPushButton

    volume, spacing = ct_crop(settings)
    viewer = new_viewer("napari-sci: File ▸ Save as .sci")
    viewer.add_image(volume, name="CT crop", scale=spacing, contrast_limits=CT_WINDOW)
    viewer.dims.set_current_step(0, 30)
    settle()
    path = settings.out / "save_progress.png"

    def capture() -> None:
        dialogs = [w for w in QApplication.topLevelWidgets()
                   if isinstance(w, QProgressDialog) and w.isVisible()]
        if not dialogs or dialogs[0].value() < 100:  # a tenth of the way (time or steps)
            return
        timer.stop()
        window = dialogs[0].parentWidget() or dialogs[0]
        QApplication.primaryScreen().grabWindow(0).copy(window.window().frameGeometry()).save(str(path))
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        dialogs[0].findChild(QPushButton).click()  # Cancel: the rest of the fit is not needed here

    timer = QTimer()
    timer.timeout.connect(capture)
    timer.start(200)
    with contextlib.suppress(OSError):  # cancelled: "saving ... was cancelled; nothing was written"
        viewer.layers.save(str(settings.work / "saved.sci"), plugin="napari-sci")
    viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--steps", type=int, default=300, help="fitting steps of the compress scene")
    parser.add_argument("--only-save", action="store_true", help="only the File ▸ Save scene")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, display():
        settings = Settings(args.data, args.out.resolve(), Path(work), args.steps)
        sci = settings.work / "ct_crop.sci"
        if args.only_save:
            save_scene(settings)
            return 0
        partition_scene(settings)
        compress_scene(settings, sci)
        open_scene(settings, sci)
        compare_scene(settings, sci)
        save_scene(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
