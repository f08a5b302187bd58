"""The encoder's loop filters: normal equations that score a filter as the decoder applies it, and
choices that pay for their bytes."""

import numpy as np
import pytest

from napari_sci.core import loop_filter_fit as F
from napari_sci.io import loop_filter as L


def _noisy(seed=0, shape=(12, 20, 18)):
    """A smooth volume (the original) and it plus white noise (the decoded one), normalised."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, s) for s in shape), indexing="ij")
    clean = 0.5 + 0.3 * np.sin(3 * x + 2 * y) * np.cos(2 * z)
    return clean, clean + rng.normal(0, 0.05, shape)


REGIONS = [(slice(0, 12), slice(0, 10), slice(0, 18)), (slice(0, 12), slice(10, 20), slice(0, 18))]


def test_the_quadratic_form_is_the_squared_error_of_the_filter_the_decoder_runs():
    clean, noisy = _noisy()
    systems = F.systems_of(noisy, clean, REGIONS)
    padded = np.pad(noisy.astype(np.float32), L.MAX_RADIUS, mode="edge")
    rng = np.random.default_rng(1)
    for radius in (1, 2, 3):
        values = rng.integers(-900, 3000, L.record_values(radius))
        loop_filter = L.LoopFilter(radius, tuple(int(v) for v in values))
        for system, region in zip(systems, REGIONS):
            out = L.filter_region(padded, L.MAX_RADIUS, region, loop_filter, 0.0, 1.0)
            direct = float(np.sum((out.astype(np.float64) - clean[region]) ** 2))
            assert F.filter_error(system, loop_filter) == pytest.approx(direct, rel=1e-4)
    for system, region in zip(systems, REGIONS):  # unfiltered
        direct = float(np.sum((noisy[region] - clean[region]) ** 2))
        assert F.filter_error(system, None) == pytest.approx(direct)


def test_columns_pick_a_radius_filters_offsets_from_the_largest_system():
    full = [tuple(d) for d in L.pair_offsets(L.MAX_RADIUS)]
    for radius in (1, 2, 3):
        cols = F.columns(radius)
        assert cols[0] == 0
        assert cols[-1] == len(full) + 1
        assert [full[c - 1] for c in cols[1:-1]] == [tuple(d) for d in L.pair_offsets(radius)]


def test_filters_that_pay_are_chosen_and_lower_the_error():
    clean, noisy = _noisy()
    systems = F.systems_of(noisy, clean, REGIONS)
    before = sum(F.filter_error(s, None) for s in systems)
    choice = F.choose_filters(systems, lam=1e-6)
    assert all(c != L.NONE for c in choice.tiles)
    filters = [choice.shared if c == L.SHARED else c for c in choice.tiles]
    after = sum(F.filter_error(s, f) for s, f in zip(systems, filters))
    assert after < 0.5 * before  # white noise on a smooth volume: a low-pass filter removes most of it


def test_no_filter_when_bits_cost_more_than_they_remove():
    clean, noisy = _noisy()
    choice = F.choose_filters(F.systems_of(noisy, clean, REGIONS), lam=1e3)
    assert choice.tiles == [L.NONE, L.NONE]
    assert choice.shared is None
    assert choice.extra_bytes == 0


def test_one_shared_filter_when_the_tiles_are_alike_and_bits_are_dear():
    """Two tiles with the same noise: one shared record is cheaper than two own ones."""
    clean, noisy = _noisy()
    systems = F.systems_of(noisy, clean, REGIONS)
    before = sum(F.filter_error(s, None) for s in systems)
    # a price per bit at which a record of up to 66 bytes pays once but not twice
    lam = 0.6 * before / (8 * 66 * 2)
    choice = F.choose_filters(systems, lam)
    assert choice.shared is not None
    assert choice.tiles == [L.SHARED, L.SHARED]
    assert choice.extra_bytes == L.record_bytes(choice.shared.radius)


def test_a_refit_keeps_the_choices_and_so_the_bytes():
    clean, noisy = _noisy()
    choice = F.choose_filters(F.systems_of(noisy, clean, REGIONS), lam=1e-6)
    _, other = _noisy(seed=5)
    again = F.refit(F.systems_of(other, clean, REGIONS), choice)
    assert again.extra_bytes == choice.extra_bytes
    assert [type(c) for c in again.tiles] == [type(c) for c in choice.tiles]
    assert again.tiles != choice.tiles or again.shared != choice.shared  # fitted anew


def test_the_encoder_writes_filters_that_lift_quality_within_the_budget(sample):
    """Models 13 and 14 against 11 and 12 on the same fit of the bundled MRI: the same budget, a
    better PSNR."""
    import napari_sci

    volume = sample[16:48]
    settings = dict(bpv=0.25, steps=30, seed=1, device="cpu", residual="dct", residual_block=(8, 8, 8))
    plain = napari_sci.compress(volume, loop_filter=False, **settings)
    filtered = napari_sci.compress(volume, **settings)
    assert plain.contents.header.model in (11, 12)
    assert filtered.contents.header.model == plain.contents.header.model + 2
    assert 0.97 * plain.target_bytes <= filtered.n_bytes <= plain.target_bytes
    assert filtered.metrics.psnr_data > plain.metrics.psnr_data + 0.1, (filtered.metrics, plain.metrics)
