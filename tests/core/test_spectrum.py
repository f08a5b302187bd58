import numpy as np
import pytest

from napari_sci.core.spectrum import spectrum_concentration


def test_constant_and_zero_blocks_are_fully_concentrated():
    assert spectrum_concentration(np.full((8, 8, 8), 3.0)) == pytest.approx(1.0)
    assert spectrum_concentration(np.zeros((4, 4, 4))) == 1.0


def test_noise_is_less_concentrated_than_a_smooth_ramp():
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(16.0), np.arange(16.0)) + 10
    noise = rng.random((16, 16))
    assert spectrum_concentration(ramp) > spectrum_concentration(noise)


def test_definition_and_top_m():
    block = np.random.default_rng(1).random((6, 7))
    mags = np.sort(np.abs(np.fft.fftn(block)).ravel())[::-1]
    assert spectrum_concentration(block, 1) == pytest.approx(mags[0] / mags.sum())
    assert spectrum_concentration(block, 3) == pytest.approx(mags[:3].sum() / mags.sum())


def test_scale_invariant():
    block = np.random.default_rng(2).random((5, 5, 5))
    assert spectrum_concentration(block) == pytest.approx(spectrum_concentration(block * 1000))
