"""The rate search on synthetic size curves (no codec): hits, floors, ceilings, shared trials."""

import math

import pytest

from napari_sci.bench.search import Knob, TrialCache, search


def fake_codec(size_of):
    calls = []

    def encode(value):
        calls.append(value)
        return b"\x00" * int(size_of(value))

    return encode, calls


CRF = Knob("crf", 0, 51, grows=False, start=0.4, resolution=0.01)


def crf_size(value):
    return 200_000 * math.exp(-value / 6)


def test_hits_the_target_from_below():
    encode, calls = fake_codec(crf_size)
    outcome = search(encode, CRF, 5000, tolerance=0.02)
    assert outcome.reached
    assert 0.98 * 5000 <= outcome.trial.size <= 5000
    assert len(outcome.trial.blob) == outcome.trial.size
    assert outcome.evaluations == len(calls) <= 16


def test_floor_is_returned_with_a_note():
    encode, _ = fake_codec(lambda v: 10_000 + v)
    outcome = search(encode, Knob("quality", 1, 100, integer=True), 5000)
    assert not outcome.reached
    assert outcome.trial.value == 1
    assert outcome.trial.size == 10_001
    assert "cannot reach" in outcome.note


def test_target_above_the_largest_output():
    encode, _ = fake_codec(lambda v: 100 * v)
    outcome = search(encode, Knob("quality", 1, 100, integer=True), 50_000)
    assert outcome.reached
    assert outcome.trial.value == 100
    assert "above the largest output" in outcome.note


def test_integer_knob_stops_on_adjacent_values():
    encode, calls = fake_codec(lambda v: 1000 * v)
    outcome = search(encode, Knob("quality", 1, 100, integer=True), 41_500)
    assert outcome.trial.value == 41
    assert len(calls) == len(set(calls))  # never the same value twice


def test_non_monotone_curve_still_keeps_the_best_fitting_output():
    encode, _ = fake_codec(lambda v: 1000 * v + (700 if int(v) % 2 else 0))
    outcome = search(encode, Knob("quality", 1, 100, integer=True), 30_000)
    assert outcome.trial.size <= 30_000
    assert outcome.trial.size >= 29_000


def test_cache_is_shared_between_targets():
    cache = TrialCache(keep_bytes=20_000)
    encode, calls = fake_codec(crf_size)
    first = search(encode, CRF, 5000, cache)
    n_first = len(calls)
    second = search(encode, CRF, 20_000, cache)
    assert first.trial.size <= 5000
    assert 0.98 * 20_000 <= second.trial.size <= 20_000
    assert len(calls) - n_first < n_first


@pytest.mark.parametrize("knob", [Knob("d", 0.01, 25, grows=False, log=True), Knob("q", 1, 100)])
def test_knob_position_inverts_at(knob):
    for u in (0.0, 0.3, 1.0):
        assert knob.position(knob.at(u)) == pytest.approx(u)
