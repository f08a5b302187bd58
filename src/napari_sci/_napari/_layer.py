"""How a ``.sci`` file becomes napari layer data: one lazily decoded image layer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari_sci.core.lazy import SciArray, open_sci


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
        }
    }


def contrast_limits(array: SciArray) -> tuple[float, float]:
    """The stored value range; napari needs a non-empty interval."""
    low, high = float(array.header.value_min), float(array.header.value_max)
    return (low, high) if high > low else (low, low + 1.0)


def sci_layer_data(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], str]:
    """``(dask array, add_image kwargs, "image")`` for ``path``; only the visible planes are decoded."""
    array = open_sci(path)
    name = Path(path).stem
    kwargs = {
        "name": name,
        "scale": tuple(float(s) for s in array.header.spacing),
        "contrast_limits": contrast_limits(array),
        "metadata": {**sci_metadata(array), "path": os.fspath(path)},
    }
    return array.to_dask(), kwargs, "image"
