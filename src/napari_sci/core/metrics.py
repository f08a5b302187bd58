"""The only place where PSNR, SSIM, binarised accuracy, BPV and compression ratio are computed.

The CLI, the benchmarks, the napari compare widget and the tests all call these functions, so every
codec is measured by the same code.

PSNR is reported twice: over the dtype's full range (65535 for uint16, as the SCI paper does) and over
the data's own range [min, max] of the original, which is the honest figure for data that uses a small
part of its dtype. SSIM is the mean over z-slices of 2D SSIM with an 11×11 Gaussian window, σ = 1.5
(Wang et al. 2004, as the paper); Acc(τ) is the fraction of voxels whose binarisation at raw intensity
τ agrees (the paper uses τ = 200 and 500).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from skimage.metrics import structural_similarity

from napari_sci.base.config import ACCURACY_THRESHOLDS
from napari_sci.base.volume import dtype_span, value_range


@dataclass(frozen=True)
class Metrics:
    """Fidelity of a reconstruction against its original."""

    psnr_data: float
    psnr_dtype: float
    ssim: float
    max_abs_error: float
    mse: float
    accuracy: dict[float, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | dict[str, float]]:
        return {"psnr_data": self.psnr_data, "psnr_dtype": self.psnr_dtype, "ssim": self.ssim,
                "max_abs_error": self.max_abs_error, "mse": self.mse,
                "accuracy": {f"{k:g}": v for k, v in self.accuracy.items()}}


def mse(original: np.ndarray, reconstruction: np.ndarray) -> float:
    diff = np.asarray(original, dtype=np.float64) - np.asarray(reconstruction, dtype=np.float64)
    return float(np.mean(diff * diff))


def psnr_from_mse(error: float, peak: float) -> float:
    """10·log10(peak² / MSE); +inf for an exact match, NaN when the peak is zero."""
    if error == 0:
        return math.inf
    if peak <= 0:
        return math.nan
    return 10.0 * math.log10(peak * peak / error)


def psnr(original: np.ndarray, reconstruction: np.ndarray, peak: float) -> float:
    return psnr_from_mse(mse(original, reconstruction), peak)


def _ssim_2d(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    smallest = min(a.shape)
    if smallest >= 11:
        return float(structural_similarity(a, b, data_range=data_range, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False))
    window = smallest if smallest % 2 else smallest - 1
    if window < 3:
        return math.nan
    return float(structural_similarity(a, b, data_range=data_range, win_size=window,
                                       use_sample_covariance=False))


def ssim(original: np.ndarray, reconstruction: np.ndarray, data_range: float) -> float:
    """Mean 2D SSIM over the slices of the first axis (the image itself for 2D); NaN if too small."""
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(reconstruction, dtype=np.float64)
    if np.array_equal(a, b):
        return 1.0
    if data_range <= 0:
        data_range = 1.0
    if a.ndim == 2:
        return _ssim_2d(a, b, data_range)
    return float(np.mean([_ssim_2d(a[k], b[k], data_range) for k in range(a.shape[0])]))


def max_abs_error(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Largest absolute difference, in data units (0 for empty arrays)."""
    if np.size(original) == 0:
        return 0.0
    diff = np.abs(np.asarray(original, dtype=np.float64) - np.asarray(reconstruction, dtype=np.float64))
    return float(diff.max())


def binarised_accuracy(original: np.ndarray, reconstruction: np.ndarray, threshold: float) -> float:
    """Fraction of voxels on the same side of ``threshold`` (strictly above, or not) in both."""
    return float(np.mean((np.asarray(original) > threshold) == (np.asarray(reconstruction) > threshold)))


def bits_per_voxel(n_bytes: int, n_voxels: int) -> float:
    return 8.0 * n_bytes / n_voxels


def compression_ratio(n_bytes: int, n_voxels: int, itemsize: int) -> float:
    """Raw array bytes over compressed bytes."""
    return n_voxels * itemsize / n_bytes if n_bytes else math.inf


def evaluate(original: np.ndarray, reconstruction: np.ndarray,
             thresholds: Sequence[float] = ACCURACY_THRESHOLDS) -> Metrics:
    """All fidelity figures of ``reconstruction`` against ``original`` (same shape)."""
    if original.shape != reconstruction.shape:
        raise ValueError(f"shapes differ: {original.shape} vs {reconstruction.shape}")
    data = value_range(original)
    error = mse(original, reconstruction)
    return Metrics(
        psnr_data=psnr_from_mse(error, data.span if data.span > 0 else 1.0),
        psnr_dtype=psnr_from_mse(error, dtype_span(original.dtype, data) or 1.0),
        ssim=ssim(original, reconstruction, data.span),
        max_abs_error=max_abs_error(original, reconstruction),
        mse=error,
        accuracy={float(t): binarised_accuracy(original, reconstruction, t) for t in thresholds},
    )


def bd_rate(rates: Sequence[float], psnrs: Sequence[float], reference_rates: Sequence[float],
            reference_psnrs: Sequence[float]) -> float:
    """Bjøntegaard delta rate (VCEG-M33) in percent: the average rate change of a codec against a
    reference at equal PSNR, over the PSNR interval both curves cover (negative: fewer bits).

    log(rate) is interpolated as a function of PSNR by monotone piecewise-cubic (PCHIP) curves, the
    variant later VCEG/JVET practice adopted over the original cubic fit because it does not
    overshoot between points. NaN when the curves share no PSNR interval or have fewer than two points.
    """
    from scipy.interpolate import PchipInterpolator

    def curve(r: Sequence[float], p: Sequence[float]) -> tuple[PchipInterpolator, float, float] | None:
        points = sorted((float(q), math.log(float(x))) for x, q in zip(r, p)
                        if x > 0 and math.isfinite(q))
        qs = [q for q, _ in points]
        if len(points) < 2 or len(set(qs)) < len(qs):
            return None
        return PchipInterpolator(qs, [lr for _, lr in points]), qs[0], qs[-1]

    ours, theirs = curve(rates, psnrs), curve(reference_rates, reference_psnrs)
    if ours is None or theirs is None:
        return math.nan
    low, high = max(ours[1], theirs[1]), min(ours[2], theirs[2])
    if high <= low:
        return math.nan
    mean_log_ratio = (ours[0].integrate(low, high) - theirs[0].integrate(low, high)) / (high - low)
    return (math.exp(mean_log_ratio) - 1.0) * 100.0
