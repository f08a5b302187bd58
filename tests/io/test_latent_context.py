"""Context-coded tile latents (format 3, model 3): the contexts follow docs/format.md sample by sample,
the coding round-trips, and on clustered latents it beats the factorised coding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_sci.errors import SciFormatError
from napari_sci.io import latent_context as lc
from napari_sci.io.latent_context import ContextModel, group_order
from napari_sci.io.latents import GridSection, unpack_grid_section
from napari_sci.models.grid_quant import tile_payload

T = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256)  # docs/format.md, "Model 3"


def test_group_order_is_the_spec_s():
    assert group_order(3) == (0, 7, 3, 5, 6, 1, 2, 4)
    assert group_order(2) == (0, 3, 1, 2)
    assert group_order(1) == (0, 1)


def _spec_coarse_at(coarse: np.ndarray, i: tuple[int, ...]) -> float:
    """The coarser level linearly interpolated at sample ``i``, axis after axis, axis 0 first."""
    value = coarse.astype(float)
    for a in range(coarse.ndim):
        m = value.shape[0]
        p = min(max((i[a] + 0.5) / 2 - 0.5, 0.0), m - 1.0)
        lo = int(np.floor(p))
        hi = min(lo + 1, m - 1)
        w = p - lo
        value = (1 - w) * np.take(value, lo, axis=0) + w * np.take(value, hi, axis=0)
    return float(value)


def _spec_contexts(grid: np.ndarray, coarse: np.ndarray | None):
    """The contexts of every sample, one at a time, straight from the spec's sentences."""
    ndim = grid.ndim
    order = group_order(ndim)
    rank = {g: k for k, g in enumerate(order)}

    def group(i):
        return sum((i[a] % 2) << (ndim - 1 - a) for a in range(ndim))

    near = np.zeros(grid.shape, int)
    coarse_bin = np.zeros(grid.shape, int)
    for i in itertools.product(*map(range, grid.shape)):
        s = n = 0
        for d in itertools.product((-1, 0, 1), repeat=ndim):
            j = tuple(a + b for a, b in zip(i, d))
            inside = all(0 <= j[a] < grid.shape[a] for a in range(ndim))
            if any(d) and inside and rank[group(j)] < rank[group(i)]:
                s += abs(int(grid[j]))
                n += 1
        near[i] = 0 if n == 0 else sum(16 * s >= t * n for t in T)
        if coarse is not None:
            coarse_bin[i] = sum(16 * abs(_spec_coarse_at(coarse, i)) >= t for t in T)
    samples = itertools.product(*map(range, grid.shape))
    first = np.array([group(i) == 0 for i in samples]).reshape(grid.shape)
    return first, near, coarse_bin


@pytest.mark.parametrize("shape", [(5, 4, 3), (1, 6, 7), (7, 9), (9,)])
def test_vectorised_contexts_equal_the_spec_sample_by_sample(shape):
    rng = np.random.default_rng(len(shape))
    grid = rng.integers(-6, 7, shape) * (rng.random(shape) < 0.4)
    coarse = rng.integers(-40, 41, tuple(-(-s // 2) for s in shape))
    first, near, coarse_bin = lc.level_contexts(grid, coarse)
    want = _spec_contexts(grid, coarse)
    np.testing.assert_array_equal(first, want[0])
    np.testing.assert_array_equal(near, want[1])
    np.testing.assert_array_equal(coarse_bin, want[2])


def _clustered_tile(shape=(24, 20, 18), levels=5, seed=0) -> list[np.ndarray]:
    """Latents that are non-zero in a blob (where a coarser level is large too), as trained ones are."""
    rng = np.random.default_rng(seed)
    grids = []
    for level in range(levels):
        dims = tuple(-(-s // (1 << level)) for s in shape)
        centre = np.indices(dims).astype(float) - np.array(dims)[:, None, None, None] / 3
        blob = np.exp(-(centre ** 2).sum(0) / (2 * (max(dims) / 5) ** 2))
        grids.append(np.rint(rng.laplace(0, 0.02 + 4 * blob)).astype(np.int32))
    grids[1][:] = 0  # an all-zero level in between
    return grids


@pytest.mark.parametrize("model", [ContextModel.zeros(7), ContextModel((3, -2, 0, 1, 0, 0, 0),
                                                                       (6, 5, 7, 4, 2, 1, 0),
                                                                       (1, 2, 0, 3, 1, 0, 0))])
def test_round_trip_3d(model):
    grids = _clustered_tile()
    payload = lc.encode_tile(grids, model)
    back = lc.decode_tile(payload, (24, 20, 18), 5, model)
    assert len(back) == len(grids)
    for got, want in zip(back, grids):
        np.testing.assert_array_equal(got, want)
    assert payload[1] == 0  # the all-zero level is not coded


def test_large_latents_round_trip_with_a_neighbourhood_slope():
    """Magnitudes up to the symbol limit reach the neighbourhood sums intact in the decoder (they were
    once kept in int8 there: a neighbour of 200 counted as −56, and such a tile decoded wrong)."""
    rng = np.random.default_rng(7)
    model = ContextModel((2, 1, 0), (6, 5, 4), (1, 1, 1))
    grids = [rng.integers(-4095, 4096, tuple(-(-s // (1 << k)) for s in (12, 10, 9))).astype(np.int32)
             for k in range(3)]
    grids[0][::2] = rng.integers(100, 300, grids[0][::2].shape)  # sums where int8 would wrap
    payload = lc.encode_tile(grids, model)
    for got, want in zip(lc.decode_tile(payload, (12, 10, 9), 3, model), grids):
        np.testing.assert_array_equal(got, want)


def test_round_trip_2d_1d_and_given_bases():
    rng = np.random.default_rng(3)
    model = ContextModel((1, 2, 3), (5, 6, 7), (1, 1, 1))
    for shape in [(13, 6), (11,)]:
        grids = [rng.integers(-3, 4, tuple(-(-s // (1 << k)) for s in shape)).astype(np.int32)
                 for k in range(3)]
        payload = lc.encode_tile(grids, model, bases=[70, 60, 50])
        assert list(payload[:3]) == [70, 60, 50]
        for got, want in zip(lc.decode_tile(payload, shape, 3, model), grids):
            np.testing.assert_array_equal(got, want)


def test_contexts_code_clustered_latents_smaller_than_one_scale_a_level():
    grids = _clustered_tile()
    factorised = len(tile_payload(grids))
    context = len(tile_payload(grids, ContextModel((0,) * 5, (6,) * 5, (2,) * 5)))
    assert context < 0.9 * factorised, (context, factorised)


def test_a_wrong_context_model_does_not_decode_the_same():
    """The decoder really uses the section's slopes: decoding with others gives other latents."""
    grids = _clustered_tile()
    model = ContextModel((0,) * 5, (6,) * 5, (2,) * 5)
    payload = lc.encode_tile(grids, model)
    try:
        back = lc.decode_tile(payload, (24, 20, 18), 5, ContextModel((0,) * 5, (0,) * 5, (0,) * 5))
    except SciFormatError:
        return
    assert any((a != b).any() for a, b in zip(back, grids))


def test_garbage_payloads_are_refused_or_decode_within_the_symbol_range():
    model = ContextModel((0,) * 4, (6,) * 4, (2,) * 4)
    rng = np.random.default_rng(5)
    for _ in range(20):
        payload = bytes(rng.integers(0, 256, 4 + 4 * int(rng.integers(0, 6)), dtype=np.uint8))
        try:
            grids = lc.decode_tile(payload, (10, 9, 8), 4, model)
        except SciFormatError:
            continue
        assert all(np.abs(g).max(initial=0) <= 4095 for g in grids)
    with pytest.raises(SciFormatError):
        lc.decode_tile(b"\x01\x02", (10, 9, 8), 4, model)


def test_section_carries_the_context_model():
    from napari_sci.base.grid_geometry import GridLayout
    from napari_sci.io.weights import TensorCode
    from napari_sci.models.grid_quant import synthesis_payload

    layout = GridLayout(4, 8, 3)
    tensors = [np.linspace(-0.5, 0.5, n) for n in layout.tensor_sizes()]
    synthesis = synthesis_payload(tensors, [TensorCode(16 * 10, 64)] * len(tensors), layout)
    model = ContextModel((-3, 0, 1, 127), (6, 7, -8, 0), (2, 0, -127, 5))
    packed = GridSection(layout, 0.5, synthesis, 1.25, model).pack()
    back = unpack_grid_section(packed, context=True)
    assert back.context == model
    assert (back.synthesis, back.latent_step) == (synthesis, 1.25)
    # read as model 2 the same bytes are a different (and here invalid) section
    with pytest.raises(SciFormatError):
        unpack_grid_section(packed[:11 + 5], context=True)
    assert unpack_grid_section(GridSection(layout, 0.5, synthesis).pack()).context is None
    # every i8 a file may hold reads as stored (no encoder writes −128, but the spec allows it)
    assert ContextModel.unpack(bytes([0x80, 0x7F, 0x00]), 1) == ContextModel((-128,), (127,), (0,))


# --- model 4: predicted means ----------------------------------------------------------------------


def _spec_means(grid: np.ndarray, coarse: np.ndarray | None, weights) -> np.ndarray:
    """μ16 of every sample, one at a time, straight from docs/format.md "Model 4"."""
    ndim = grid.ndim
    rank = {g: k for k, g in enumerate(group_order(ndim))}
    big_k = 1_774_080

    def group(i):
        return sum((i[a] % 2) << (ndim - 1 - a) for a in range(ndim))

    out = np.zeros(grid.shape, np.int64)
    for i in itertools.product(*map(range, grid.shape)):
        s = [0] * (ndim + 1)
        n = [0] * (ndim + 1)
        for d in itertools.product((-1, 0, 1), repeat=ndim):
            j = tuple(a + b for a, b in zip(i, d))
            inside = all(0 <= j[a] < grid.shape[a] for a in range(ndim))
            if any(d) and inside and rank[group(j)] < rank[group(i)]:
                k = sum(1 for step in d if step)
                s[k] += int(grid[j])
                n[k] += 1
        v = 0
        if coarse is not None and coarse.any():
            v = 64 * _spec_coarse_at(coarse, i)
            assert v == int(v)  # the spec: an integer
            v = int(v)
        a_num = weights[0] * v * 27_720
        for k in range(1, ndim + 1):
            if n[k]:
                assert big_k % n[k] == 0
                a_num += weights[k] * s[k] * (big_k // n[k])
        out[i] = min(max((a_num + big_k) // (2 * big_k), -65_520), 65_520)
    return out


@pytest.mark.parametrize("shape", [(5, 4, 3), (1, 6, 7), (7, 9), (9,)])
def test_vectorised_means_equal_the_spec_sample_by_sample(shape):
    rng = np.random.default_rng(10 + len(shape))
    grid = rng.integers(-60, 61, shape) * (rng.random(shape) < 0.6)
    coarse = rng.integers(-40, 41, tuple(-(-s // 2) for s in shape))
    for weights in [(32, 0, 0, 0), (-17, 23, 9, -5), (127, -128, 127, 127), (0, 0, 0, 0)]:
        np.testing.assert_array_equal(lc.level_means(grid, coarse, weights),
                                      _spec_means(grid, coarse, weights))
    np.testing.assert_array_equal(lc.level_means(grid, None, (20, 10, 5, 3)),
                                  _spec_means(grid, None, (20, 10, 5, 3)))


def test_mean_features_are_the_means_the_weights_multiply():
    """The trainer's continuous view (coarser value, face/edge/corner means) times weights/32 is the
    file's mean before its rounding to 1/16."""
    rng = np.random.default_rng(4)
    grid = rng.integers(-9, 10, (6, 5, 7))
    coarse = rng.integers(-9, 10, (3, 3, 4))
    weights = np.array([13, 29, -7, 5])
    features = lc.level_mean_features(grid, coarse)
    continuous = np.tensordot(weights / 32, features.astype(np.float64), axes=1)
    assert np.abs(16 * continuous - lc.level_means(grid, coarse, weights)).max() <= 0.5 + 1e-4


PREDICTIVE = ContextModel((3, -2, 0, 1, 0), (6, 5, 7, 4, 2), (1, 2, 0, 3, 1),
                          ((10, 30, 8, 2), (0, 0, 0, 0), (-20, 25, 6, -3), (127, -128, 60, 9), (32, 0, 0, 0)))


def test_model_4_round_trips_in_3d_2d_and_1d_with_extreme_weights():
    grids = _clustered_tile()
    payload = lc.encode_tile(grids, PREDICTIVE)
    for got, want in zip(lc.decode_tile(payload, (24, 20, 18), 5, PREDICTIVE), grids):
        np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(8)
    model = ContextModel((1, 2, 3), (5, 6, 7), (1, 1, 1), ((40, 30, 20, 0), (-60, 90, 0, 0), (5, 5, 0, 0)))
    for shape in [(13, 6), (11,), (12, 10, 9)]:
        grids = [rng.integers(-4095, 4096, tuple(-(-s // (1 << k)) for s in shape)).astype(np.int32)
                 for k in range(3)]
        for got, want in zip(lc.decode_tile(lc.encode_tile(grids, model), shape, 3, model), grids):
            np.testing.assert_array_equal(got, want)


def test_predicted_means_code_smooth_latents_smaller_and_the_decoder_uses_them():
    """Latents that agree with their neighbours and coarser level (as along an edge) cost fewer bits
    about a predicted mean; decoding with the weights left out gives other latents."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    shape = (24, 20, 18)
    grids = [np.rint(gaussian_filter(rng.normal(size=tuple(-(-s // (1 << k)) for s in shape)) * 40, 1.2))
             .astype(np.int32) for k in range(4)]
    model3 = lc.refine_context_model([grids], ContextModel.zeros(4))
    model4 = lc.refine_context_model([grids], ContextModel.zeros(4, mean=True))
    assert model4.mean is not None
    assert model4.mean_array().any()
    with_mean = lc.encode_tile(grids, model4)
    assert len(with_mean) < 0.85 * len(lc.encode_tile(grids, model3)), (len(with_mean),)
    try:
        back = lc.decode_tile(with_mean, shape, 4, ContextModel(model4.first, model4.near, model4.coarse))
    except SciFormatError:
        return
    assert any((a != b).any() for a, b in zip(back, grids))


def test_refined_mean_weights_never_code_a_level_worse_than_zero_weights():
    """The encoder keeps zero weights where a mean does not pay (latents that are noise)."""
    rng = np.random.default_rng(2)
    grids = [rng.integers(-3, 4, tuple(-(-s // (1 << k)) for s in (16, 14, 12))).astype(np.int32)
             for k in range(3)]
    model3 = lc.refine_context_model([grids], ContextModel.zeros(3))
    model4 = lc.refine_context_model([grids], ContextModel.zeros(3, mean=True))
    assert len(lc.encode_tile(grids, model4)) <= len(lc.encode_tile(grids, model3)) + 4


def test_section_carries_the_mean_weights():
    from napari_sci.base.grid_geometry import GridLayout
    from napari_sci.io.weights import TensorCode
    from napari_sci.models.grid_quant import synthesis_payload

    layout = GridLayout(5, 8, 3)
    tensors = [np.linspace(-0.5, 0.5, n) for n in layout.tensor_sizes()]
    synthesis = synthesis_payload(tensors, [TensorCode(16 * 10, 64)] * len(tensors), layout)
    packed = GridSection(layout, 0.5, synthesis, 1.25, PREDICTIVE).pack()
    assert len(packed) == 11 + 7 * 5 + len(synthesis)
    back = unpack_grid_section(packed, context=True, mean=True)
    assert back.context == PREDICTIVE
    assert back.synthesis == synthesis
    with pytest.raises(SciFormatError):  # model 4's section cut short of its mean weights
        unpack_grid_section(packed[:11 + 5 * 5], context=True, mean=True)
