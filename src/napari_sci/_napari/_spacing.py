"""The physical voxel size of an image layer opened from a TIFF.

napari's own TIFF reader ignores the spacing an ImageJ or OME TIFF stores, so a volume opens at
1 × 1 × 1 and a ``.sci`` made from it would store that. A reader of our own for ``*.tif`` would make
napari ask which plugin to use for every TIFF (or refuse ``viewer.open`` without ``plugin=``), so the
plugin reads the spacing from the layer's source file instead: the widgets give an unscaled TIFF layer
its file's voxel size (with a notification), and File ▸ Save uses it.
"""

from __future__ import annotations

import logging
import math
import os
import xml.etree.ElementTree as ET
from typing import Any

logger = logging.getLogger(__name__)
TIFF_SUFFIXES = (".tif", ".tiff")


def _ome_spacing(xml: str, ndim: int) -> tuple[float, ...] | None:
    pixels = next((e for e in ET.fromstring(xml).iter() if e.tag.endswith("}Pixels")), None)
    if pixels is None:
        return None
    names = ("PhysicalSizeZ", "PhysicalSizeY", "PhysicalSizeX")[-ndim:]
    return tuple(float(pixels.get(name, 1.0)) for name in names)


def file_spacing(path: str | os.PathLike[str] | None, ndim: int) -> tuple[float, ...] | None:
    """Voxel size (one value per axis, ``ndim`` 2 or 3) stored in an ImageJ or OME TIFF; None when
    the file is not such a TIFF, cannot be read, or stores none."""
    if path is None or not os.fspath(path).lower().endswith(TIFF_SUFFIXES) or ndim not in (2, 3):
        return None
    import tifffile

    from napari_sci.core.volume_files import _tiff_spacing  # the CLI's reading of ImageJ spacing

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                spacing = _ome_spacing(tif.ome_metadata, ndim)
            elif tif.is_imagej:  # plain TIFFs often carry a 72 dpi resolution that is no voxel size
                spacing = _tiff_spacing(tif, ndim)
            else:
                return None
    except Exception as error:  # a damaged file: keep the layer as napari opened it
        logger.info("napari-sci: no voxel size from %s: %s", path, error)
        return None
    if spacing is None or len(spacing) != ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        return None
    return tuple(float(s) for s in spacing)


def source_spacing(layer: Any) -> tuple[float, ...] | None:
    """The voxel size stored in the file ``layer`` was opened from (see :func:`file_spacing`)."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return file_spacing(path, int(layer.ndim))


def _unscaled(layer: Any) -> bool:
    return all(float(s) == 1.0 for s in layer.scale)


def adopt_file_spacing(layer: Any) -> tuple[float, ...] | None:
    """Give an unscaled image layer opened from an ImageJ/OME TIFF its file's voxel size; returns the
    spacing set (None if nothing changed). A scale the user or a reader set is kept."""
    from napari.layers import Image

    if not isinstance(layer, Image) or not _unscaled(layer):
        return None
    spacing = source_spacing(layer)
    if spacing is None or all(s == 1.0 for s in spacing):
        return None
    layer.scale = spacing
    from napari.utils.notifications import show_info

    show_info(f"napari-sci: {layer.name} takes its voxel size {describe(spacing)} from its TIFF metadata")
    return spacing


def describe(scale: Any) -> str:
    """``1.5 × 0.957 × 0.957``."""
    return " × ".join(f"{float(s):.4g}" for s in scale)


def save_spacing(layer: Any | None, scale: Any, ndim: int) -> tuple[float, ...] | None:
    """What File ▸ Save stores: the layer's scale, or its file's voxel size when the layer is unscaled."""
    if scale is None or len(scale) != ndim:
        return None
    if layer is not None and _unscaled(layer):
        return source_spacing(layer) or tuple(float(s) for s in scale)
    return tuple(float(s) for s in scale)
