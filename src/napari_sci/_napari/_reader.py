"""npe2 reader for ``.sci`` files: sniffs the suffix and the magic bytes, never raises."""

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


def get_reader(path: Any) -> ReaderFunction | None:
    """Return :func:`read_sci` when every path is a ``.sci`` file, else None (napari tries others)."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(_is_sci(p) for p in paths):
        return None
    return read_sci


def read_sci(path: Any) -> list[LayerData]:
    """One lazily decoded image layer per file, named after it, scaled by its stored spacing."""
    from napari_sci._napari._layer import sci_layer_data

    paths = path if isinstance(path, (list, tuple)) else [path]
    layers = [sci_layer_data(p) for p in paths]
    _watch_current_viewer()
    return layers


def _watch_current_viewer() -> None:
    """Decode in the background when the viewer that opens these files turns 3D."""
    try:
        import napari
    except ImportError:
        return
    from napari_sci._napari._views import watch_3d

    watch_3d(napari.current_viewer())
