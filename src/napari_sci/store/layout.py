"""The files of a ``.sci.zarr`` store: its chunk grid, chunk paths, attributes and atomic chunk writes.

docs/format.md ("Chunked stores") is the spec. A chunk counts as written only when its file exists and
parses as a complete ``.sci`` file (every CRC checked); anything else is fitted again.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sci.base.config import STORE_SUFFIX
from napari_sci.errors import SciError, SciFormatError, SciPathError

STORE_VERSION = 1
ARRAY_NAME = "0"
ATTRS_KEY = "napari_sci"
CODEC_NAME = "napari-sci"
MIN_LEVEL_SIDE = 32
MAX_LEVELS = 8


@dataclass(frozen=True)
class ChunkGrid:
    """The regular grid of chunks over a volume: shape, chunk shape, and each chunk's region."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]

    @classmethod
    def cubic(cls, shape: Sequence[int], side: int) -> ChunkGrid:
        """Chunks of ``side`` voxels per axis, clipped to the volume."""
        shape = tuple(int(s) for s in shape)
        return cls(shape, tuple(min(side, s) for s in shape))

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(math.ceil(s / c) for s, c in zip(self.shape, self.chunks))

    @property
    def n_chunks(self) -> int:
        return math.prod(self.counts)

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Every chunk index, in C order (the order of their seeds)."""
        return itertools.product(*(range(n) for n in self.counts))

    def linear(self, index: Sequence[int]) -> int:
        return int(np.ravel_multi_index(tuple(index), self.counts))

    def box(self, index: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """(start, stop) per axis of chunk ``index``, clipped to the volume."""
        return tuple((i * c, min((i + 1) * c, s)) for i, c, s in zip(index, self.chunks, self.shape))

    def slices(self, index: Sequence[int]) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.box(index))


def chunk_seed(seed: int, grid: ChunkGrid, index: Sequence[int]) -> int:
    """The fit seed of chunk ``index``: the run's seed plus the chunk's C-order position."""
    return (seed + grid.linear(index)) % 2**32


def chunk_path(store: Path, index: Sequence[int]) -> Path:
    """Where chunk ``index``'s file lives (zarr v3 default chunk keys, separator ``/``)."""
    return store.joinpath(ARRAY_NAME, "c", *(str(int(i)) for i in index))


def is_store_path(path: str | os.PathLike[str]) -> bool:
    """True for a path named ``*.sci.zarr`` (existing or not)."""
    return os.fspath(path).rstrip("/\\").lower().endswith(STORE_SUFFIX)


def level_shapes(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes of the multiscale levels: halving while the largest axis keeps ``MIN_LEVEL_SIDE``."""
    levels = [tuple(int(s) for s in shape)]
    while len(levels) < MAX_LEVELS:
        k = len(levels)
        nxt = tuple(math.ceil(s / 2**k) for s in shape)
        if max(nxt) < MIN_LEVEL_SIDE:
            break
        levels.append(nxt)
    return levels


def read_attributes(store: Path) -> dict[str, Any]:
    """The root group's attributes; ``SciFormatError`` when ``store`` is no napari-sci store."""
    meta = store / "zarr.json"
    try:
        document = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SciFormatError(f"{store} is not a .sci.zarr store (no zarr.json)") from error
    except (OSError, ValueError) as error:
        raise SciFormatError(f"{store}/zarr.json cannot be read: {error}") from error
    attrs = document.get("attributes", {}) if isinstance(document, dict) else {}
    if not isinstance(attrs, dict) or not isinstance(attrs.get(ATTRS_KEY), dict):
        raise SciFormatError(f"{store} is a zarr store but not a napari-sci one (no {ATTRS_KEY!r} "
                             "attributes)")
    version = attrs[ATTRS_KEY].get("store_version")
    if version != STORE_VERSION:
        raise SciFormatError(f"{store}: store version {version!r} is not one this reader knows "
                             f"({STORE_VERSION})")
    return attrs


def write_chunk(store: Path, index: Sequence[int], data: bytes) -> Path:
    """Write a chunk's bytes atomically: a hidden temp file beside it, fsync, then rename."""
    target = chunk_path(store, index)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def chunk_written(store: Path, index: Sequence[int]) -> bool:
    """True when chunk ``index`` holds a complete ``.sci`` file with valid CRCs."""
    from napari_sci.io.container import parse

    path = chunk_path(store, index)
    try:
        parse(path.read_bytes())
    except (OSError, SciError):
        return False
    return True


def check_store_output(store: Path, source: Path) -> None:
    """Refuse an output that is the input, lies inside it, or has no parent folder (before any work)."""
    if not is_store_path(store):
        raise SciPathError(f"{store}: a chunked store must be named *{STORE_SUFFIX}")
    resolved, source_resolved = store.resolve(), source.resolve()
    if resolved == source_resolved or source_resolved in resolved.parents:
        raise SciPathError("the output store would be written into the input; choose another path")
    if not store.parent.is_dir():
        raise SciPathError(f"the output folder {store.parent} does not exist")
    if store.exists() and not store.is_dir():
        raise SciPathError(f"{store} exists and is not a folder")
