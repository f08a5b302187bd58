"""ROI arithmetic for the compare widget (numpy only): the box a rectangle covers in the current plane,
and the fidelity figures inside it, computed by :mod:`napari_sci.core.metrics`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_sci.core.metrics import max_abs_error, psnr, ssim


@dataclass(frozen=True)
class RoiMetrics:
    """PSNR (over ``data_range``), SSIM and largest absolute error inside one ROI of one plane."""

    psnr: float
    ssim: float
    max_error: float
    voxels: int


def plane_index(point: Sequence[float], shape: Sequence[int], plane_axes: Sequence[int],
                box: Sequence[tuple[int, int]]) -> tuple[int | slice, ...]:
    """Index of ``box`` (one ``(start, stop)`` per plane axis) in the plane through ``point``.

    ``point`` is in data coordinates; off-plane axes are rounded and clipped into the array."""
    index: list[int | slice] = []
    for axis, size in enumerate(shape):
        if axis in plane_axes:
            start, stop = box[list(plane_axes).index(axis)]
            index.append(slice(start, stop))
        else:
            index.append(int(np.clip(np.rint(point[axis]), 0, size - 1)))
    return tuple(index)


def rectangle_box(vertices: np.ndarray, shape: Sequence[int],
                  plane_axes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The voxels a rectangle encloses, clipped to the array: ``vertices`` is ``(k, len(plane_axes))``,
    in data coordinates along ``plane_axes``.

    A voxel counts when its centre lies inside; an empty box comes back as ``(k, k)``."""
    box = []
    for column, axis in enumerate(plane_axes):
        low, high = float(np.min(vertices[:, column])), float(np.max(vertices[:, column]))
        start = int(np.clip(np.ceil(low), 0, shape[axis]))
        stop = int(np.clip(np.floor(high) + 1, start, shape[axis]))
        box.append((start, stop))
    return tuple(box)


def roi_metrics(original: np.ndarray, decoded: np.ndarray, data_range: float) -> RoiMetrics:
    """Figures of ``decoded`` against ``original`` (same shape); PSNR's peak is the whole volume's range."""
    if original.shape != decoded.shape:
        raise ValueError(f"the layers differ in shape: {original.shape} vs {decoded.shape}")
    if original.size == 0:
        return RoiMetrics(float("nan"), float("nan"), float("nan"), 0)
    peak = data_range if data_range > 0 else 1.0
    return RoiMetrics(psnr(original, decoded, peak), ssim(original, decoded, peak),
                      max_abs_error(original, decoded), int(original.size))
