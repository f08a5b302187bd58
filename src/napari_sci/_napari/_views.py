"""3D views of decoded ``.sci`` layers: tiles decoded ahead in a worker, with a visible indicator.

napari slices layers in its event loop, and its own callbacks run before any plugin's, so the first
3D view of a lazily decoded layer used to freeze the viewer for the whole decode (3-4 s for a CT). A
``.sci`` layer added to the viewer therefore has its tiles decoded in a worker into the file's cache
(napari's activity area shows a progress bar, and while the view is 3D a line on the canvas says so);
a 3D view or a change of viewing axis afterwards draws from the cache. Volumes larger than
:data:`PREFETCH_BYTES` are left to napari (they need a multiscale file).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sci._napari._worker import Outcome, start
from napari_sci.core.events import RunState

if TYPE_CHECKING:
    import napari

_WATCHERS: dict[int, tuple[weakref.ref[Any], Decode3D]] = {}


def decode_tiles(data: Any, stop: threading.Event) -> Generator[int, None, Outcome[None]]:
    """Decode every chunk of a tile-chunked dask array (filling the file's cache); yields the count."""
    from dask.array.core import slices_from_chunks

    try:
        for done, index in enumerate(slices_from_chunks(data.chunks), start=1):
            if stop.is_set():
                return Outcome(RunState.CANCELLED)
            np.asarray(data[index].compute(scheduler="sync"))
            yield done
        return Outcome(RunState.DONE)
    except Exception as error:
        from napari_sci._napari._worker import failure

        return failure(error)


PREFETCH_BYTES = 512 * 2**20  # decoded size up to which a layer is decoded ahead


class Decode3D:
    """Decodes the ``.sci`` layers added to one viewer ahead of a 3D view, in the background."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.jobs: dict[int, tuple[Any, str]] = {}
        self._overlay: tuple[bool, str] | None = None
        viewer.layers.events.inserted.connect(self.on_inserted)
        viewer.dims.events.ndisplay.connect(self.on_ndisplay)

    def on_inserted(self, event: Any) -> None:
        layer = event.value
        data = getattr(layer, "data", None)
        if "sci" in getattr(layer, "metadata", {}) and hasattr(data, "chunks") and \
                data.nbytes <= PREFETCH_BYTES:
            self._start(layer)

    def on_ndisplay(self, event: Any = None) -> None:
        self._say(self._text() if self.viewer.dims.ndisplay == 3 else None)

    def _text(self) -> str | None:
        return "; ".join(text for _, text in self.jobs.values()) or None

    def _start(self, layer: Any) -> None:
        from napari.utils import progress

        total = int(np.prod(layer.data.numblocks))
        bar = progress(total=total, desc=f"napari-sci: decoding {layer.name}")
        key = id(layer)

        def advance(done: int) -> None:
            bar.update(1)
            if key in self.jobs:
                self.jobs[key] = (self.jobs[key][0], f"decoding {layer.name}: {done}/{total} tiles")
            self.on_ndisplay()

        def finished(outcome: Outcome[None]) -> None:
            bar.close()
            self.jobs.pop(key, None)
            self.on_ndisplay()
            if outcome.state is RunState.FAILED:
                from napari.utils.notifications import show_error

                show_error(f"napari-sci: could not decode {layer.name}: {outcome.message}")

        job = start(decode_tiles, layer.data, on_event=advance, on_outcome=finished,
                    stop=threading.Event())
        self.jobs[key] = (job, f"decoding {layer.name}: 0/{total} tiles")
        self.viewer.layers.events.removed.connect(
            lambda event: job.cancel() if event.value is layer else None)
        self.on_ndisplay()

    def _say(self, text: str | None) -> None:
        """A line on the canvas while decoding (napari's text overlay, restored afterwards)."""
        overlay = text_overlay(self.viewer)
        if text is None:
            if self._overlay is not None:
                overlay.visible, overlay.text = self._overlay
                self._overlay = None
            return
        if self._overlay is None:
            self._overlay = (overlay.visible, overlay.text)
        overlay.text, overlay.visible = text, True


def text_overlay(viewer: napari.viewer.Viewer) -> Any:
    """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    return overlays.text if overlays is not None and hasattr(overlays, "text") else viewer.text_overlay


def watch_3d(viewer: napari.viewer.Viewer | None) -> Decode3D | None:
    """Install (once per viewer) the decoding ahead of the ``.sci`` layers added to it."""
    if viewer is None:
        return None
    ref, watcher = _WATCHERS.get(id(viewer), (None, None))
    if ref is not None and ref() is viewer:
        return watcher
    watcher = Decode3D(viewer)
    _WATCHERS[id(viewer)] = (weakref.ref(viewer), watcher)
    return watcher
