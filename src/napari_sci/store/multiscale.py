"""Reading a ``.sci.zarr`` store lazily at any resolution: level k samples the continuous representation
at every 2^k-th voxel, evaluating the networks at those coordinates alone (no stored pyramid).

:class:`SciStore` holds the store's metadata and a cache of chunk decoders; :class:`SciStoreLevel` is one
level as an array-like (``shape``, ``dtype``, ``__getitem__``, ``to_dask``) that napari takes as one
level of a multiscale image. Level 0 is exactly what zarr reads through the codec (deblocked chunks).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_sci.base.memory import available_memory, decoder_peak_bytes, describe_bytes
from napari_sci.base.volume import ValueRange, to_dtype
from napari_sci.core.decoder import VolumeDecoder
from napari_sci.core.lazy import LazyVolume, normalise_key
from napari_sci.errors import SciFormatError, SciMemoryError
from napari_sci.io.container import parse
from napari_sci.io.format import VALUE_KINDS
from napari_sci.store.layout import (
    ARRAY_NAME,
    ATTRS_KEY,
    ChunkGrid,
    chunk_path,
    level_shapes,
    read_attributes,
)
from napari_sci.store.source import spacing_of

DECODER_CACHE = 512
RESULT_CACHE = 32
SMALL_REQUEST_BYTES = 64 * 2**20


def sample_decoder(decoder: VolumeDecoder, picks: Sequence[np.ndarray]) -> np.ndarray:
    """Float32 values (data units, undeblocked) of one ``.sci`` file on the grid ``picks`` (sorted voxel
    indices per axis); each block evaluates only the picked voxels inside it."""
    out = np.empty(tuple(len(p) for p in picks), dtype=np.float32)
    box = tuple((int(p[0]), int(p[-1]) + 1) for p in picks)
    models = decoder.models
    for index in decoder.blocks_touching(box):
        origin, size = decoder.origins[index], decoder.sizes[index]
        masks = [(p >= o) & (p < o + s) for p, o, s in zip(picks, origin, size)]
        if not all(m.any() for m in masks):
            continue
        local = [p[m] - o for p, m, o in zip(picks, masks, origin)]
        record = decoder.header.blocks[index]
        if record["kind"] in VALUE_KINDS:
            values = np.full(tuple(len(a) for a in local), record["lo"], dtype=np.float32)
        else:
            values = models.evaluate_at(index, local)
        out[np.ix_(*masks)] = values
    return out


class SciStore:
    """A ``.sci.zarr`` store opened for reading: shape, dtype, spacing, levels, cached chunk decoders."""

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu") -> None:
        import zarr

        from napari_sci.store import codec  # noqa: F401  (registers the codec with zarr)

        self.path = Path(path)
        self.attrs = read_attributes(self.path)
        self.info = self.attrs[ATTRS_KEY]
        array = zarr.open_array(str(self.path / ARRAY_NAME), mode="r")
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.fill_value = array.fill_value
        self.grid = ChunkGrid(self.shape, tuple(int(c) for c in array.chunks))
        self.spacing = spacing_of(self.attrs.get("ome", {})) or (1.0,) * len(self.shape)
        self.device = device
        self._decoders: OrderedDict[tuple[int, ...], VolumeDecoder | None] = OrderedDict()
        self._lock = threading.Lock()
        self.levels = [SciStoreLevel(self, k, shape) for k, shape in enumerate(level_shapes(self.shape))]

    @property
    def report(self) -> dict[str, Any] | None:
        return self.info.get("report")

    def decoder(self, index: tuple[int, ...]) -> VolumeDecoder | None:
        """Chunk ``index``'s decoder (cached), or None for a chunk not written yet (reads as fill)."""
        with self._lock:
            if index in self._decoders:
                self._decoders.move_to_end(index)
                return self._decoders[index]
        try:
            data = chunk_path(self.path, index).read_bytes()
        except FileNotFoundError:
            decoder = None
        else:
            contents = parse(data)
            expected = tuple(b - a for a, b in self.grid.box(index))
            if contents.header.shape != expected or contents.header.dtype != self.dtype:
                raise SciFormatError(f"chunk {index} of {self.path} holds {contents.header.shape} "
                                     f"{contents.header.dtype}, not {expected} {self.dtype}")
            decoder = VolumeDecoder(contents, self.device)
        with self._lock:
            self._decoders[index] = decoder
            while len(self._decoders) > DECODER_CACHE:
                self._decoders.popitem(last=False)
        return decoder

    def chunk_values(self, index: tuple[int, ...], picks: Sequence[np.ndarray], level: int) -> np.ndarray:
        """Chunk ``index`` on the chunk-local voxel grid ``picks``, in the store's dtype."""
        decoder = self.decoder(index)
        shape = tuple(len(p) for p in picks)
        if decoder is None:
            return np.full(shape, self.fill_value, dtype=self.dtype)
        if level == 0:  # deblocked, as zarr reads it: the box around the picks, then the picks
            box = tuple((int(p[0]), int(p[-1]) + 1) for p in picks)
            values = decoder.decode(box)
            if all(len(p) == b - a for p, (a, b) in zip(picks, box)):
                return values
            return values[np.ix_(*[p - p[0] for p in picks])]
        header = decoder.header
        with np.errstate(all="ignore"):
            values = sample_decoder(decoder, picks)
        return to_dtype(values, header.dtype, ValueRange(header.value_min, header.value_max))


class SciStoreLevel(LazyVolume):
    """Level ``level`` of a store as a lazily decoded array (voxel i is full-resolution voxel i·2^level).

    ``levels`` lists all levels (the same objects), so ``open_sci(store)`` can return level 0 and still
    give napari the whole pyramid.
    """

    def __init__(self, store: SciStore, level: int, shape: tuple[int, ...]) -> None:
        self.store = store
        self.level = level
        self.shape = shape
        self.dtype = store.dtype
        self.ndim = len(shape)
        self._cache: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def levels(self) -> list[SciStoreLevel]:
        return self.store.levels

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size of this level: the store's, times 2^level."""
        return tuple(s * 2**self.level for s in self.store.spacing)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"SciStoreLevel({self.store.path.name}, level={self.level}, shape={self.shape}, "
                f"dtype={self.dtype}, levels={len(self.levels)})")

    def __getitem__(self, key: Any) -> np.ndarray:
        items = normalise_key(key, self.shape)
        if any(isinstance(i, range) and len(i) == 0 for i in items):
            return np.empty(tuple(len(i) for i in items if isinstance(i, range)), dtype=self.dtype)
        cache_key = tuple((i.start, i.stop, i.step) if isinstance(i, range) else i for i in items)
        with self._lock:
            if cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return self._cache[cache_key]
        out = self._read([np.array([i]) if isinstance(i, int) else np.array(i) for i in items])
        out = out[tuple(0 if isinstance(i, int) else slice(None) for i in items)]
        with self._lock:
            self._cache[cache_key] = out
            while len(self._cache) > RESULT_CACHE:
                self._cache.popitem(last=False)
        return out

    def _read(self, level_picks: list[np.ndarray]) -> np.ndarray:
        """The voxels on the grid ``level_picks`` (level indices per axis, any order)."""
        shape = tuple(len(p) for p in level_picks)
        needed = decoder_peak_bytes(math.prod(shape))
        if needed > SMALL_REQUEST_BYTES:
            limit = available_memory()
            if limit is not None and needed > limit:
                raise SciMemoryError(f"reading {'x'.join(map(str, shape))} voxels needs about "
                                     f"{describe_bytes(needed)} but {describe_bytes(limit)} is "
                                     "available; read a smaller region or a coarser level")
        out = np.empty(shape, dtype=self.dtype)
        full = [p.astype(np.int64) * 2**self.level for p in level_picks]
        chunks = self.store.grid.chunks
        per_axis = [np.unique(f // c) for f, c in zip(full, chunks)]
        for index in itertools.product(*(a.tolist() for a in per_axis)):
            masks = [f // c == i for f, c, i in zip(full, chunks, index)]
            local = [f[m] - i * c for f, m, i, c in zip(full, masks, index, chunks)]
            order = [np.argsort(a, kind="stable") for a in local]
            values = self.store.chunk_values(tuple(index), [a[o] for a, o in zip(local, order)], self.level)
            inverse = [np.argsort(o, kind="stable") for o in order]
            out[np.ix_(*masks)] = values[np.ix_(*inverse)]
        return out

    def _dask_name(self) -> str:
        return f"sci-store-{id(self.store)}-{self.level}"


def open_store(path: str | os.PathLike[str], device: str = "cpu") -> SciStore:
    """Open a ``.sci.zarr`` store for reading; ``SciFormatError`` when it is not one."""
    return SciStore(path, device)
