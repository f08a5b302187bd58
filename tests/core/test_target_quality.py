import math

import pytest

from napari_sci.base.config import compress_config
from napari_sci.core.target_quality import QualitySearch, QualityTry, _next_bpv, compress_to_psnr
from napari_sci.errors import SciBudgetError


def tries(*points):
    target = 30.0
    return [QualityTry(i + 1, bpv, 0, psnr, 1.0, psnr >= target) for i, (bpv, psnr) in enumerate(points)]


def test_brackets_upward_then_narrows_with_secant_steps():
    search = QualitySearch(30.0)
    up = _next_bpv(tries((0.1, 26.0)), search)
    assert up == pytest.approx(0.2)  # one doubling per 4 dB short, at least one
    inside = _next_bpv(tries((0.1, 26.0), (0.4, 34.0)), search)
    assert 0.1 < inside < 0.4
    assert math.log2(inside) == pytest.approx(math.log2(0.1) + 1.0)  # linear in log2(BPV)
    assert _next_bpv(tries((0.1, 29.9), (0.105, 30.1)), search) is None  # bracket within 8 %


def test_steps_down_when_the_first_guess_passes_and_stops_at_the_floor():
    search = QualitySearch(30.0, min_bpv=0.01)
    assert _next_bpv(tries((0.1, 38.0)), search) == pytest.approx(0.025)
    assert _next_bpv(tries((0.01, 31.0)), search) is None


def test_finds_a_passing_file_smaller_than_the_first_passing_try(mri):
    seen = []
    config = compress_config(bpv=1.0, steps=150, samples_per_block=1024, format=2)
    result = compress_to_psnr(mri, config, QualitySearch(24.0, max_tries=5), on_event=seen.append)
    reports = [e for e in seen if isinstance(e, QualityTry)]
    assert reports
    assert result.metrics.psnr_data >= 24.0
    assert result.n_bytes == min(t.n_bytes for t in reports if t.passed)


def test_unreachable_target_says_the_best_reached(mri):
    config = compress_config(bpv=0.5, steps=5, samples_per_block=512)
    with pytest.raises(SciBudgetError, match="was not reached"):
        compress_to_psnr(mri, config, QualitySearch(90.0, max_bpv=1.0, max_tries=3))
