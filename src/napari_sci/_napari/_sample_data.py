"""File ▸ Open Sample: the bundled 64×128×128 crop of the Colin27 T1 MRI, 1 mm voxels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_sci.core.volume_files import read_volume

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "mri_t1_colin27_crop.tif"


def colin27_crop() -> list[tuple[Any, dict[str, Any], str]]:
    """The sample as one image layer with the spacing stored in its TIFF (1 mm isotropic)."""
    volume, spacing = read_volume(SAMPLE)
    return [(volume, {"name": "Colin27 T1 crop", "scale": spacing or (1.0,) * volume.ndim,
                      "metadata": {"source": SAMPLE.name}}, "image")]
