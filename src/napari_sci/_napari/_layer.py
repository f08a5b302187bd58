"""How a ``.sci`` file becomes napari layer data: one lazily decoded image layer."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_sci.core.lazy import SciArray
from napari_sci.io.container import SciContents, read_sci

CACHE_ITEMS = 64  # decoded requests kept besides one per tile (2D planes)


def sci_metadata(array: SciArray) -> dict[str, Any]:
    """What napari shows in ``layer.metadata``: size, fidelity and blocks of the file."""
    header = array.header
    return {
        "sci": {
            "bpv": array.bpv,
            "ratio": array.ratio,
            "psnr": header.psnr,
            "blocks": len(header.blocks),
            "file_bytes": array.file_size,
            "value_range": (header.value_min, header.value_max),
            "spacing": header.spacing,
            "steps": header.steps,
            "format": header.version,
            "model": header.family,
        }
    }


def contrast_limits(array: SciArray) -> tuple[float, float]:
    """The stored value range; napari needs a non-empty interval."""
    low, high = float(array.header.value_min), float(array.header.value_max)
    return (low, high) if high > low else (low, low + 1.0)


def tile_chunks(contents: SciContents) -> tuple[tuple[int, ...], ...]:
    """Dask chunks along the file's block boundaries: every chunk lies inside one block.

    A chunk per axial plane made a 3D view or a change of viewing axis decode each plane whole; with
    tiles, a plane through any axis decodes only its part of the blocks it crosses, and a 3D view
    decodes each block once."""
    tree, header = contents.tree, contents.header
    nodes = [tree.nodes[int(n)] for n in header.blocks["node"]]
    chunks = []
    for axis, size in enumerate(header.shape):
        edges = {0, int(size)}
        for node in nodes:
            edges.update((int(node.origin[axis]), int(node.origin[axis] + node.size[axis])))
        chunks.append(tuple(int(d) for d in np.diff(sorted(edges))))
    return tuple(chunks)


ARRAY_METHODS = frozenset({
    "astype", "all", "any", "argmax", "argmin", "clip", "copy", "cumsum", "max", "mean", "min",
    "nonzero", "prod", "ravel", "reshape", "round", "squeeze", "std", "sum", "swapaxes", "T",
    "tobytes", "transpose", "var", "view"})
MARGIN = 2  # voxels decoded beyond a tile's in-plane faces, then cropped (see _Tile.__getitem__)


class _Tile:
    """One dask chunk, decoded only when sliced: a plane through it decodes that plane alone.

    dask (2026) no longer fuses slicing into ``from_array``'s getter, so a chunk that was a numpy array
    would be decoded whole for every plane drawn; this stand-in lets dask's own slicing task ask the
    file for just the requested voxels, and ``np.asarray`` (a 3D view) decodes the whole tile.
    """

    def __init__(self, tiles: _Tiles, array: SciArray, index: tuple[slice, ...]) -> None:
        self.tiles, self.array, self.index = tiles, array, index
        self.shape = tuple(s.stop - s.start for s in index)
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        box, local = [], []
        for k, tile, size in zip(key, self.index, self.array.shape):
            if isinstance(k, slice):
                start, stop, step = k.indices(tile.stop - tile.start)
                # the lazy decoder is inexact at a request's faces where they meet a block face, so
                # decode a little beyond the tile along extended axes and crop (planes stay planes)
                margin = MARGIN if stop - start > 1 else 0
                low = max(tile.start + start - margin, 0)
                high = min(tile.start + stop + margin, size)
                box.append(slice(low, high))
                local.append(slice(tile.start + start - low, tile.start + stop - low, step))
            else:
                box.append(slice(tile.start + int(k), tile.start + int(k) + 1))
                local.append(0)
        return self.array[tuple(box)][tuple(local)]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        whole = tuple(slice(None) for _ in self.index)
        with self.tiles.once(self.index):
            out = self[whole]
        return out if dtype is None else out.astype(dtype)


    def __getattr__(self, name: str) -> Any:
        """Anything else (``astype``, ``sum``, ...) as the decoded tile: dask hands chunks to numpy."""
        if name not in ARRAY_METHODS:  # a probe (hasattr) must not decode the tile
            raise AttributeError(name)
        return getattr(np.asarray(self), name)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return getattr(ufunc, method)(*_decoded(inputs), **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return func(*_decoded(args), **dict(zip(kwargs, _decoded(tuple(kwargs.values())))))


def _decoded(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """``values`` with every tile (also inside lists and tuples) decoded."""
    return tuple(np.asarray(v) if isinstance(v, _Tile)
                 else type(v)(_decoded(tuple(v))) if isinstance(v, (list, tuple)) else v for v in values)


class _Tiles:
    """The file and which whole tiles are being decoded: a tile asked for by napari and by the
    background decoder (:mod:`napari_sci._napari._views`) at once is decoded once; the other waits
    and then reads the file's cache."""

    def __init__(self, array: SciArray) -> None:
        self.array = array
        self._lock = threading.Lock()
        self._started: dict[tuple[int, ...], threading.Event] = {}

    @contextmanager
    def once(self, index: tuple[slice, ...]) -> Iterator[None]:
        key = tuple(i for s in index for i in (s.start, s.stop))
        with self._lock:
            done = self._started.get(key)
            if done is None:
                self._started[key] = threading.Event()
        if done is not None:
            done.wait()
            yield
            return
        try:
            yield
        finally:
            self._started[key].set()


def open_tiled(path: str | os.PathLike[str]) -> tuple[SciArray, Any]:
    """The file as a :class:`SciArray` whose cache holds every tile, and its tile-chunked dask view."""
    import dask.array as da

    contents = read_sci(path)
    chunks = tile_chunks(contents)
    tiles = int(np.prod([len(c) for c in chunks]))
    array = SciArray(contents, cache_items=tiles + CACHE_ITEMS)
    data = da.from_array(array, chunks=chunks, name=f"sci-tiles-{id(array)}", asarray=False,
                         fancy=False, getitem=functools.partial(_Tile, _Tiles(array)),
                         meta=np.empty((0,) * array.ndim, array.dtype))
    return array, data


def sci_layer_data(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], str]:
    """``(dask array, add_image kwargs, "image")`` for ``path``; only the visible planes are decoded."""
    array, data = open_tiled(path)
    name = Path(path).stem
    kwargs = {
        "name": name,
        "scale": tuple(float(s) for s in array.header.spacing),
        "contrast_limits": contrast_limits(array),
        "metadata": {**sci_metadata(array), "path": os.fspath(path)},
    }
    return data, kwargs, "image"


def sci_store_layer_data(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], str]:
    """``([dask array per level], add_image kwargs, "image")`` for a ``.sci.zarr`` store: a multiscale
    layer whose coarser levels are decoded at coarser coordinates (none is stored)."""
    from napari_sci.store.multiscale import open_store

    store = open_store(path)
    levels = store.levels
    coarsest = np.asarray(levels[-1][...])  # a few voxels: the contrast without touching level 0
    low, high = (float(coarsest.min()), float(coarsest.max())) if coarsest.size else (0.0, 1.0)
    name = Path(os.fspath(path).rstrip("/\\")).name.removesuffix(".sci.zarr")
    kwargs = {
        "name": name,
        "multiscale": True,
        "scale": tuple(float(s) for s in store.spacing),
        "contrast_limits": (low, high) if high > low else (low, low + 1.0),
        "metadata": {"sci_store": {"report": store.report, "levels": [lv.shape for lv in levels],
                                   "chunks": store.grid.chunks}, "path": os.fspath(path)},
    }
    data = [level.to_dask() for level in levels] if len(levels) > 1 else levels[0].to_dask()
    if len(levels) == 1:
        kwargs["multiscale"] = False
    return data, kwargs, "image"
