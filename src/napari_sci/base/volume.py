"""Checking an input volume, its value range, and mapping values back to the input's dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from napari_sci.base.memory import MEMORY_ENV, available_memory, describe_bytes, encoder_peak_bytes
from napari_sci.errors import SciInputError, SciMemoryError

SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(name)
    for name in ("uint8", "uint16", "int16", "float32", "float64", "bool", "int8", "uint32", "int32")
)
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ValueRange:
    """The smallest and largest value of a volume; decoding clips to it."""

    low: float
    high: float

    @property
    def span(self) -> float:
        return self.high - self.low


def check_layout(shape: tuple[int, ...], dtype: np.dtype,
                 max_bytes: int | Literal["auto"] | None = "auto") -> None:
    """Refuse a volume by its shape and dtype alone, before any of it is read or allocated.

    ``max_bytes`` bounds the encoder's estimated peak memory: ``"auto"`` (default) is what this machine
    has available (``$NAPARI_SCI_MAX_MEMORY`` overrides it), ``None`` disables the check.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if dtype.newbyteorder("=") in SUPPORTED_DTYPES and dtype.byteorder not in ("=", "|"):
        dtype = dtype.newbyteorder("=")  # a big-endian array is converted, not refused
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        hint = " (e.g. array.astype(numpy.float32))" if dtype.kind in "fiu" else ""
        raise SciInputError(f"dtype {dtype} is not supported; convert to one of: {names}{hint}")
    if len(shape) not in (2, 3):
        raise SciInputError(f"expected a 2D image or 3D volume, got {len(shape)}D shape {shape}"
                            f"{_ndim_hint(shape)}")
    if min(shape) < 1:
        raise SciInputError(f"the volume is empty: shape {shape}")
    if max(shape) >= 2**32:
        raise SciInputError(f"an axis is longer than 2**32-1 voxels: shape {shape}")
    limit = available_memory() if max_bytes == "auto" else max_bytes
    needed = encoder_peak_bytes(shape, dtype)
    if limit is not None and needed > limit:
        raise SciMemoryError(
            f"compressing shape {shape} {dtype} needs about {describe_bytes(needed)} of memory but "
            f"{describe_bytes(limit)} is available; compress a crop or tiles of it (or set "
            f"{MEMORY_ENV} if more memory is free)")


def _ndim_hint(shape: tuple[int, ...]) -> str:
    if len(shape) < 2:
        return "; give at least a 2D image"
    singles = [i for i, s in enumerate(shape) if s == 1]
    if len(shape) - len(singles) in (2, 3) and singles:
        return (f"; axes {singles} have size 1: numpy.squeeze the array (CLI: --channel-axis "
                f"{singles[0]})")
    return ("; for channels or time points compress each 2D/3D volume separately "
            "(CLI: --channel-axis AXIS writes one .sci per index along AXIS)")


def check_volume(volume: np.ndarray, max_bytes: int | Literal["auto"] | None = "auto") -> np.ndarray:
    """Return ``volume`` as a native-byte-order ndarray if napari-sci can compress it, else raise
    ``SciInputError`` naming the problem and what would work (see :func:`check_layout`)."""
    if not hasattr(volume, "shape") or not hasattr(volume, "dtype"):
        raise SciInputError(f"expected an array, got {type(volume).__name__}")
    check_layout(tuple(volume.shape), np.dtype(volume.dtype), max_bytes)
    array = np.asarray(volume)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            raise SciInputError(f"the volume has {bad} NaN or infinite values; replace them "
                                "(e.g. numpy.nan_to_num) before compressing")
        low, high = float(np.min(array)), float(np.max(array))
        if max(-low, high, high - low) > FLOAT32_MAX:
            raise SciInputError(f"values span [{low:g}, {high:g}], beyond what float32 networks can "
                                f"hold (±{FLOAT32_MAX:.4g}); rescale the volume first")
    return array


def value_range(volume: np.ndarray) -> ValueRange:
    """Smallest and largest value, as floats."""
    return ValueRange(float(np.min(volume)), float(np.max(volume)))


def normalised_volume(volume: np.ndarray, data: ValueRange) -> np.ndarray:
    """``volume`` mapped to [0, 1] by its range, as float32: what the spectrum concentrations see."""
    return ((volume.astype(np.float32) - np.float32(data.low))
            / np.float32(data.span if data.span > 0 else 1.0))


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
    """Clip decoded float values to the data range and convert to ``dtype`` (rounding integers).

    Never warns and never yields values outside the range: a non-finite network output (only a
    damaged or hostile file can produce one) becomes the nearest end of the range, NaN the low end.
    """
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"):
        # fmax skips NaN (so NaN becomes the low end) and ±inf clip to the ends: one pass, no copy
        # for nan_to_num on this decode hot path
        clipped = np.fmin(np.fmax(values, data.low), data.high)
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


def coordinates_at(size: int, indices: np.ndarray) -> np.ndarray:
    """Float32 coordinates of the voxels ``indices`` (any ints) along an axis of ``size`` voxels;
    equal to :func:`axis_coordinates` wherever both are defined."""
    index = np.asarray(indices).astype(np.float32)
    return index * np.float32(coordinate_scale(size)) - np.float32(1.0 if size > 1 else 0.0)
