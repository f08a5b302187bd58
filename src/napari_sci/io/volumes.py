"""Reading input volumes (TIFF, .npy, zarr) and writing decoded ones (TIFF, .npy).

Inputs are opened read-only and never modified. Voxel spacing is taken from ImageJ TIFF metadata when
present (z from ``spacing``, y/x from the resolution tags) and written back the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_sci.errors import SciInputError, SciPathError

TIFF_SUFFIXES = (".tif", ".tiff")


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


def read_volume(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """The array stored at ``path`` and its voxel spacing (None when unknown)."""
    source = Path(path)
    if not source.exists():
        raise SciPathError(f"input {source} does not exist")
    try:
        if source.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(source) as tif:
                array = tif.asarray()
                spacing = _tiff_spacing(tif, array.ndim) if array.ndim in (2, 3) else None
            return array, spacing
        if source.suffix.lower() == ".npy":
            return np.load(source, allow_pickle=False), None
        if source.suffix.lower() == ".zarr" or source.is_dir():
            import zarr

            return np.asarray(zarr.open(str(source), mode="r")[...]), None
    except (OSError, ValueError) as error:
        raise SciInputError(f"cannot read {source}: {error}") from error
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
