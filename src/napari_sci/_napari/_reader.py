"""npe2 reader for ``.sci`` files and ``.sci.zarr`` stores: sniffs suffix and magic bytes (or the store's
zarr.json), never raises."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from napari_sci.io.format import MAGIC

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]


def _is_sci(path: Any) -> bool:
    """True for a single existing path ending in ``.sci`` whose first bytes are the ``.sci`` magic."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    name = os.fspath(path)
    if not name.lower().endswith(".sci"):
        return False
    try:
        with open(name, "rb") as stream:
            return stream.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _is_store(path: Any) -> bool:
    """True for an existing folder named ``*.sci.zarr`` holding a zarr.json (a chunked store)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    name = os.fspath(path).rstrip("/\\")
    return name.lower().endswith(".sci.zarr") and os.path.isfile(os.path.join(name, "zarr.json"))


def get_reader(path: Any) -> ReaderFunction | None:
    """Return :func:`read_sci` when every path is a ``.sci`` file or ``.sci.zarr`` store, else None
    (napari tries others)."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(_is_sci(p) or _is_store(p) for p in paths):
        return None
    return read_sci


def read_sci(path: Any) -> list[LayerData]:
    """One lazily decoded image layer per file, named after it, scaled by its stored spacing; a store
    gives a multiscale layer."""
    from napari_sci._napari._layer import sci_layer_data, sci_store_layer_data
    from napari_sci.errors import SciError

    paths = path if isinstance(path, (list, tuple)) else [path]
    layers = []
    for one in paths:
        try:
            layers.append(sci_store_layer_data(one) if _is_store(one) else sci_layer_data(one))
        except (SciError, OSError) as error:
            # napari would show "Tried to read … with plugin napari-sci … Try associating a different
            # plugin" and hide the reason under View Traceback: say it, and add nothing
            return _refuse(one, error)
    _watch_current_viewer()
    return layers


def _refuse(path: Any, error: BaseException) -> list[Any]:
    """Notify why ``path`` cannot be opened, in one sentence; napari's empty-file sentinel adds no layer."""
    from pathlib import Path

    from napari.utils.notifications import show_error

    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = text.replace(f"{path}: ", "").replace(str(path), Path(path).name)
    show_error(f"napari-sci: cannot open {Path(path).name}: {text}")
    return [(None,)]


def _watch_current_viewer() -> None:
    """Decode ahead (for a 3D view) in the viewer that opens these files."""
    try:
        import napari
    except ImportError:
        return
    from napari_sci._napari._views import watch_3d

    watch_3d(napari.current_viewer())
