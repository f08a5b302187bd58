"""Reading input volumes (TIFF, .npy, zarr) and writing decoded ones (TIFF, .npy).

Inputs are opened read-only and never modified. Voxel spacing is taken from ImageJ TIFF metadata when
present (z from ``spacing``, y/x from the resolution tags) and written back the same way.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_sci.base.memory import MEMORY_ENV, available_memory, describe_bytes
from napari_sci.errors import SciError, SciInputError, SciMemoryError, SciPathError

TIFF_SUFFIXES = (".tif", ".tiff")
LayoutCheck = Callable[[tuple[int, ...], np.dtype], None]


def _tiff_spacing(tif: object, ndim: int) -> tuple[float, ...] | None:
    page = tif.pages[0]  # type: ignore[attr-defined]
    spacing = []
    for tag in ("YResolution", "XResolution"):
        value = page.tags.get(tag)
        if value is None:
            return None
        numerator, denominator = value.value
        spacing.append(denominator / numerator if numerator else 1.0)
    meta = getattr(tif, "imagej_metadata", None) or {}
    if ndim == 3:
        spacing.insert(0, float(meta.get("spacing", 1.0)))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        return None
    return tuple(spacing)


def tiff_spacing(path: str | os.PathLike[str], ndim: int) -> tuple[float, ...] | None:
    """The voxel spacing in a TIFF's tags (ImageJ z spacing, resolution y/x), read without its pixels."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return _tiff_spacing(tif, ndim) if ndim in (2, 3) else None


class _LogProblems(logging.Handler):
    """Collects what tifffile logs at ERROR level: it reports damaged files there and returns partial
    data (e.g. one page of a truncated stack) instead of raising."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_problems() -> Iterator[list[str]]:
    handler = _LogProblems()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)


def _check_memory(source: Path, shape: tuple[int, ...], dtype: np.dtype,
                  max_bytes: int | Literal["auto"] | None) -> None:
    """Refuse to load an array that does not fit in memory (before loading it)."""
    needed = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
    limit = available_memory() if max_bytes == "auto" else max_bytes
    if limit is not None and needed > limit:
        raise SciMemoryError(f"{source}: loading shape {tuple(shape)} {dtype} needs "
                            f"{describe_bytes(needed)} but {describe_bytes(limit)} is available; "
                            f"crop it first (or set {MEMORY_ENV} if more memory is free)")


def _tiff_series(tif: Any, source: Path) -> Any:
    if not tif.series:
        raise SciInputError(f"{source}: the TIFF holds no image")
    return tif.series[0]


def _check_tiff_extents(series: Any, source: Path, file_size: int) -> None:
    """Every strip or tile of every page must lie inside the file: a truncated TIFF is refused."""
    for page in series.pages:
        if page is None:
            raise SciInputError(f"{source}: a page of the TIFF is missing; the file is damaged")
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            if offset + count > file_size:
                raise SciInputError(f"{source}: image data ends at byte {offset + count} but the file "
                                    f"has {file_size} bytes; the TIFF is truncated")


def _read_tiff(source: Path, check: LayoutCheck) -> tuple[np.ndarray, tuple[float, ...] | None]:
    import tifffile

    with _tifffile_problems() as problems, tifffile.TiffFile(source) as tif:
        series = _tiff_series(tif, source)
        check(tuple(series.shape), np.dtype(series.dtype))
        _check_tiff_extents(series, source, source.stat().st_size)
        array = series.asarray()
        spacing = _tiff_spacing(tif, array.ndim) if array.ndim in (2, 3) else None
    if problems:
        raise SciInputError(f"{source}: the TIFF is damaged or truncated ({problems[0]}); "
                            "nothing was read from it")
    return array, spacing


def _read_npy(source: Path, check: LayoutCheck) -> np.ndarray:
    """Header first (never unpickles): dtype, shape and length are checked before loading."""
    with source.open("rb") as stream:
        version = np.lib.format.read_magic(stream)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _, dtype = reader(stream, max_header_size=2**16)
        data_at = stream.tell()
    if dtype.hasobject:
        raise SciInputError(f"{source}: the .npy holds Python objects (dtype {dtype}); napari-sci never "
                            "unpickles; save a numeric array instead")
    check(tuple(shape), dtype)
    needed = data_at + math.prod(shape) * dtype.itemsize
    if source.stat().st_size < needed:
        raise SciInputError(f"{source}: the .npy is truncated ({source.stat().st_size} of {needed} "
                            "bytes)")
    return np.load(source, allow_pickle=False)


def _read_zarr(source: Path, check: LayoutCheck) -> np.ndarray:
    import zarr

    try:
        node = zarr.open(str(source), mode="r")
    except FileNotFoundError as error:
        raise SciInputError(f"{source} is a directory but not a zarr array; give a .tif/.tiff, .npy "
                            "or .zarr array") from error
    if not isinstance(node, zarr.Array):
        names = ", ".join(sorted(str(k) for k in node.array_keys())) or "none"
        raise SciInputError(f"{source} is a zarr group, not an array; give the path of one of its "
                            f"arrays ({names})")
    check(tuple(node.shape), np.dtype(node.dtype))
    return np.asarray(node[...])


def read_volume(path: str | os.PathLike[str], max_bytes: int | Literal["auto"] | None = "auto",
                before_load: LayoutCheck | None = None
                ) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """The array stored at ``path`` and its voxel spacing (None when unknown).

    Opens read-only; refuses (``SciPathError`` / ``SciInputError``, one line) a missing or unreadable
    path, a damaged or truncated file, an object array, and an array larger than ``max_bytes``
    (``"auto"``: the memory available). ``before_load(shape, dtype)`` runs after the file's header is
    read and before its data is: the place to refuse a volume that could not be compressed anyway.
    """
    source = Path(path)
    if not source.exists():
        raise SciPathError(f"input {source} does not exist")
    suffix = source.suffix.lower()
    is_zarr = suffix == ".zarr" or source.is_dir()
    if is_zarr and suffix in (*TIFF_SUFFIXES, ".npy"):
        raise SciPathError(f"input {source} is a directory, not a {suffix} file")
    if not is_zarr and not source.is_file():
        raise SciPathError(f"input {source} is not a regular file")
    def check(shape: tuple[int, ...], dtype: np.dtype) -> None:
        _check_memory(source, shape, dtype, max_bytes)
        if before_load is not None:
            before_load(shape, dtype)

    try:
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(source, check)
        if suffix == ".npy":
            return _read_npy(source, check), None
        if is_zarr:
            return _read_zarr(source, check), None
    except PermissionError as error:
        raise SciPathError(f"cannot read {source}: permission denied") from error
    except SciError:
        raise
    except (OSError, ValueError, EOFError, struct.error, IndexError, KeyError) as error:
        # what tifffile, numpy and zarr raise on damaged files
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SciInputError(f"cannot read {source}: {text}") from error
    raise SciInputError(f"{source}: unsupported input; give a .tif/.tiff, .npy or .zarr array")


def write_volume(path: str | os.PathLike[str], array: np.ndarray,
                 spacing: tuple[float, ...] | None = None, overwrite: bool = False) -> Path:
    """Write a decoded array as TIFF (ImageJ, with spacing) or .npy, atomically."""
    from napari_sci.io.container import write_atomic

    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import io

        import tifffile

        buffer = io.BytesIO()
        kwargs: dict[str, object] = {}
        imagej = array.dtype in (np.uint8, np.uint16, np.float32) and array.ndim in (2, 3)
        if spacing is not None:
            kwargs["resolution"] = (1.0 / spacing[-1], 1.0 / spacing[-2])
            if imagej and array.ndim == 3:
                kwargs["metadata"] = {"spacing": spacing[0], "axes": "ZYX"}
        tifffile.imwrite(buffer, array, imagej=imagej, **kwargs)
        data = buffer.getvalue()
    elif suffix == ".npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
    else:
        raise SciPathError(f"{target}: unsupported output; use .tif, .tiff or .npy")
    return write_atomic(target, data, overwrite=overwrite)
