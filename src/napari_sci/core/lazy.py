"""A lazily decoded, array-like view of a ``.sci`` file.

``SciArray[...]`` decodes only the blocks (and within them only the voxels) that the request touches,
keeps recent results in a small LRU cache, and returns the original dtype. ``to_dask()`` wraps it for
viewers that compute plane by plane (napari).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from napari_sci.base.memory import available_memory, decoder_peak_bytes, describe_bytes
from napari_sci.core.decoder import VolumeDecoder
from napari_sci.core.metrics import bits_per_voxel, compression_ratio
from napari_sci.errors import SciMemoryError
from napari_sci.io.container import SciContents, read_sci

_names = itertools.count()
SMALL_REQUEST_BYTES = 64 * 2**20


def normalise_key(key: Any, shape: tuple[int, ...]) -> list[range | int]:
    """Basic indexing only: ints, slices and one Ellipsis; returns an int or a range per axis."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = len(shape) - (len(key) - 1)
        key = key[:at] + (slice(None),) * fill + key[at + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices for a {len(shape)}D array")
    key = key + (slice(None),) * (len(shape) - len(key))
    items: list[range | int] = []
    for k, size in zip(key, shape):
        if isinstance(k, (int, np.integer)):
            index = int(k) + size if k < 0 else int(k)
            if not 0 <= index < size:
                raise IndexError(f"index {k} is out of bounds for an axis of size {size}")
            items.append(index)
        elif isinstance(k, slice):
            items.append(range(*k.indices(size)))
        else:
            raise IndexError(f"SciArray supports ints, slices and ... only, got {type(k).__name__}")
    return items


class LazyVolume:
    """What the lazily decoded arrays share (a ``.sci`` file, a store's level): ``numpy.asarray``
    decodes the whole array, ``to_dask`` one plane per task. Subclasses give ``shape``, ``dtype``,
    ``ndim`` and ``__getitem__``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    ndim: int

    def __getitem__(self, key: Any) -> np.ndarray:
        raise NotImplementedError

    def _dask_name(self) -> str:
        """The dask graph's name: unique per array, so two arrays never share cached tasks."""
        return f"sci-{id(self)}-{next(_names)}"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        full = self[...]
        return full if dtype is None else full.astype(dtype)

    def to_dask(self, chunks: tuple[int, ...] | None = None) -> Any:
        """A dask array computed plane by plane (or by ``chunks``)."""
        import dask.array as da

        if chunks is None:
            chunks = (1, *self.shape[1:]) if self.ndim == 3 else self.shape
        return da.from_array(self, chunks=chunks, name=self._dask_name(), asarray=False, fancy=False,
                             meta=np.empty((0,) * self.ndim, self.dtype))


class SciArray(LazyVolume):
    """Array-like over a ``.sci`` file: ``shape``, ``dtype``, ``ndim``, ``__getitem__``, ``to_dask``.

    Parameters
    ----------
    source
        A path, or already validated :class:`SciContents`.
    deblocking
        Apply the deblocking filter at block faces (on by default).
    cache_items
        How many decoded requests to keep (LRU).
    device
        Torch device used to evaluate the networks.
    """

    def __init__(self, source: str | os.PathLike[str] | SciContents, deblocking: bool = True,
                 cache_items: int = 64, device: str = "cpu") -> None:
        self.contents = source if isinstance(source, SciContents) else read_sci(source)
        self.header = self.contents.header
        self.deblocking = deblocking
        self._decoder = VolumeDecoder(self.contents, device)
        self._cache: OrderedDict[tuple[tuple[int, int], ...], np.ndarray] = OrderedDict()
        self._cache_items = cache_items
        self._lock = threading.Lock()
        self.blocks_decoded = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.header.shape

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype

    @property
    def ndim(self) -> int:
        return self.header.ndim

    @property
    def size(self) -> int:
        return self.header.n_voxels

    @property
    def file_size(self) -> int:
        return self.contents.file_size

    @property
    def bpv(self) -> float:
        return bits_per_voxel(self.file_size, self.size)

    @property
    def ratio(self) -> float:
        return compression_ratio(self.file_size, self.size, self.dtype.itemsize)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"SciArray(shape={self.shape}, dtype={self.dtype}, blocks={len(self.header.blocks)}, "
                f"bpv={self.bpv:.4g})")

    def _box(self, box: tuple[tuple[int, int], ...]) -> np.ndarray:
        with self._lock:
            if box in self._cache:
                self._cache.move_to_end(box)
                return self._cache[box]
        out = self._decoder.decode(box, self.deblocking)
        with self._lock:
            self.blocks_decoded += len(self._decoder.blocks_touching(box))
            self._cache[box] = out
            while len(self._cache) > self._cache_items:
                self._cache.popitem(last=False)
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        items = normalise_key(key, self.shape)
        box: list[tuple[int, int]] = []
        local: list[slice | int] = []
        for item in items:
            if isinstance(item, int):
                box.append((item, item + 1))
                local.append(0)
                continue
            picked = item
            if len(picked) == 0:
                box.append((0, 0))
                local.append(slice(0, 0))
                continue
            low, high = min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1
            box.append((low, high))
            end = picked[-1] - low + (1 if item.step > 0 else -1)
            local.append(slice(picked[0] - low, end if end >= 0 else None, item.step))
        if any(stop <= start for start, stop in box):
            shape = tuple(len(i) for i in items if isinstance(i, range))
            return np.empty(shape, dtype=self.dtype)
        self._check_memory(tuple(box))
        return np.asarray(self._box(tuple(box))[tuple(local)])

    def _check_memory(self, box: tuple[tuple[int, int], ...]) -> None:
        """Refuse a request too large to decode at once (a file may describe a huge volume)."""
        n_voxels = math.prod(stop - start + 2 for start, stop in box)  # +2: deblocking border
        needed = decoder_peak_bytes(n_voxels)
        if needed < SMALL_REQUEST_BYTES:  # a plane of an ordinary volume: skip asking the OS
            return
        limit = available_memory()
        if limit is not None and needed > limit:
            raise SciMemoryError(
                f"decoding {'x'.join(str(b - a) for a, b in box)} voxels needs about "
                f"{describe_bytes(needed)} but {describe_bytes(limit)} is available; decode a "
                "smaller region (--roi, or slice the array), or use to_dask()")


def open_sci(path: str | os.PathLike[str], deblocking: bool = True, device: str = "cpu") -> SciArray:
    """Open a ``.sci`` file lazily; the whole file is validated first."""
    return SciArray(path, deblocking=deblocking, device=device)
