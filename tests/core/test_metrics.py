import math

import numpy as np
import pytest

from napari_sci.core.metrics import (
    binarised_accuracy,
    bits_per_voxel,
    compression_ratio,
    evaluate,
    max_abs_error,
    psnr,
    ssim,
)


def test_psnr_definition():
    a = np.zeros((4, 4), dtype=np.uint8)
    b = a.copy()
    b[0, 0] = 16  # MSE = 16
    assert psnr(a, b, 255) == pytest.approx(10 * math.log10(255**2 / 16))
    assert psnr(a, a, 255) == math.inf


def test_two_psnr_ranges_for_uint16():
    rng = np.random.default_rng(0)
    a = rng.integers(100, 1100, size=(8, 16, 16)).astype(np.uint16)
    b = (a.astype(int) + rng.integers(-5, 6, size=a.shape)).clip(0).astype(np.uint16)
    m = evaluate(a, b)
    assert m.psnr_dtype - m.psnr_data == pytest.approx(20 * math.log10(65535 / float(np.ptp(a))))


def test_ssim_is_one_for_identical_and_drops_with_noise(mri):
    assert ssim(mri, mri, 255) == 1.0
    noisy = np.clip(mri + np.random.default_rng(0).normal(0, 20, mri.shape), 0, 255)
    assert ssim(mri, noisy, float(np.ptp(mri))) < 0.9


def test_accuracy_and_size_figures():
    a = np.array([100, 300, 600])
    b = np.array([250, 300, 400])
    assert binarised_accuracy(a, b, 200) == pytest.approx(2 / 3)
    assert binarised_accuracy(a, b, 500) == pytest.approx(2 / 3)
    assert bits_per_voxel(1000, 80_000) == pytest.approx(0.1)
    assert compression_ratio(1000, 80_000, 2) == pytest.approx(160)


def test_max_abs_error():
    """The compare widget's ROI figure: largest difference in data units, 0 for an empty ROI."""
    a = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    b = np.array([[1, 10], [15, 30]], dtype=np.uint8)
    assert max_abs_error(a, b) == 5.0  # no uint8 wrap-around
    assert max_abs_error(a[:0], b[:0]) == 0.0


def test_bd_rate_of_a_curve_that_needs_half_the_bits_is_minus_fifty_percent():
    from napari_sci.core.metrics import bd_rate

    rates = [0.02, 0.05, 0.1, 0.25]
    psnrs = [28.0, 31.0, 33.5, 36.0]
    assert bd_rate(rates, psnrs, rates, psnrs) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate([r / 2 for r in rates], psnrs, rates, psnrs) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate([r * 1.1 for r in rates], psnrs, rates, psnrs) == pytest.approx(10.0, abs=1e-6)
    # a curve 1 dB better everywhere costs fewer bits over the shared interval
    assert bd_rate(rates, [p + 1 for p in psnrs], rates, psnrs) < 0
    assert math.isnan(bd_rate(rates, [p + 20 for p in psnrs], rates, psnrs))  # no shared interval
