"""Checking an input volume, its value range, and mapping values back to the input's dtype."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_sci.errors import SciInputError

SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(name)
    for name in ("uint8", "uint16", "int16", "float32", "float64", "bool", "int8", "uint32", "int32")
)


@dataclass(frozen=True)
class ValueRange:
    """The smallest and largest value of a volume; decoding clips to it."""

    low: float
    high: float

    @property
    def span(self) -> float:
        return self.high - self.low


def check_volume(volume: np.ndarray, max_bytes: int | None = None) -> np.ndarray:
    """Return ``volume`` as an ndarray if napari-sci can compress it, else raise ``SciInputError``.

    The message names the problem and what would work.
    """
    if not hasattr(volume, "shape") or not hasattr(volume, "dtype"):
        raise SciInputError(f"expected an array, got {type(volume).__name__}")
    dtype = np.dtype(volume.dtype)
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise SciInputError(f"dtype {dtype} is not supported; convert to one of: {names}")
    if volume.ndim not in (2, 3):
        hint = (" (for channels or time points, compress each 3D volume separately)"
                if volume.ndim > 3 else "")
        raise SciInputError(f"expected a 2D image or 3D volume, got {volume.ndim}D shape "
                            f"{tuple(volume.shape)}{hint}")
    if min(volume.shape) < 1:
        raise SciInputError(f"the volume is empty: shape {tuple(volume.shape)}")
    if max(volume.shape) >= 2**32:
        raise SciInputError(f"an axis is longer than 2**32-1 voxels: shape {tuple(volume.shape)}")
    n_bytes = int(np.prod(volume.shape, dtype=np.int64)) * 4
    if max_bytes is not None and n_bytes > max_bytes:
        raise SciInputError(
            f"the volume needs {n_bytes / 2**30:.2f} GiB as float32 but at most "
            f"{max_bytes / 2**30:.2f} GiB may be used; compress a crop or tiles of it")
    array = np.asarray(volume)
    if dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise SciInputError(f"the volume has {bad} NaN or infinite values; replace them "
                            "(e.g. numpy.nan_to_num) before compressing")
    return array


def value_range(volume: np.ndarray) -> ValueRange:
    """Smallest and largest value, as floats."""
    return ValueRange(float(np.min(volume)), float(np.max(volume)))


def dtype_span(dtype: np.dtype, data: ValueRange) -> float:
    """The full range of a dtype, as the paper's PSNR uses it; the data's range for floats."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 1.0
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    return data.span


def to_dtype(values: np.ndarray, dtype: np.dtype, data: ValueRange) -> np.ndarray:
    """Clip decoded float values to the data range and convert to ``dtype`` (rounding integers)."""
    dtype = np.dtype(dtype)
    clipped = np.clip(values, data.low, data.high)
    if dtype == np.bool_:
        return clipped >= 0.5
    if dtype.kind in "ui":
        return np.rint(clipped).astype(dtype)
    return clipped.astype(dtype)


def coordinate_scale(size: int) -> float:
    """Step between neighbouring voxel coordinates along an axis of ``size`` voxels.

    Voxel ``i`` sits at ``i * scale - 1``, so the first voxel is at -1 and the last at +1 (docs/format.md).
    """
    return 2.0 / (size - 1) if size > 1 else 0.0


def axis_coordinates(size: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Float32 coordinates of voxels ``start:stop`` along an axis of ``size`` voxels."""
    stop = size if stop is None else stop
    index = np.arange(start, stop, dtype=np.float32)
    return index * np.float32(coordinate_scale(size)) - np.float32(1.0 if size > 1 else 0.0)
