"""The residual encoder's rate–distortion quantisation (core/grid_residual.rd_quantise): its bit model
against the real streams, its limits (λ = 0 is rounding; it never raises a magnitude) and its point —
less error in the same bytes."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_sci.core.grid_residual import code_residual, rd_quantise
from napari_sci.io import residual as R
from napari_sci.models import residual_blocks as B


def _textured(shape, seed):
    """A smooth field with sparse sharp spots: the kind of residual a latent fit leaves."""
    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.normal(size=shape), 1.5)
    spots = rng.normal(size=shape) * (rng.random(shape) < 0.01)
    return 0.03 * smooth / np.abs(smooth).max() + 0.02 * spots


@pytest.fixture(scope="module")
def tile():
    shape = (24, 24, 16)
    layout = R.tile_layout(shape, None)
    return layout, B.transform(_textured(shape, 0))


def test_the_bit_model_matches_the_coded_stream(tile):
    """Σ coefficient bits + band flag bits (the decisions' rate) is the stream's size within a few %
    (the block flags and the ANS words are the rest)."""
    layout, coefficients = tile
    q = R.quantise(coefficients, 0.004)
    model = R.best_codes([(layout, q)], 0.004)
    significant = R.significance(layout, q)
    inside = np.flatnonzero(significant[layout.block_of, layout.bands])
    bits = R.coefficient_bits(layout, q, model, inside, np.abs(q[inside])[:, None]).sum()
    flags = R.band_flag_bits(layout, significant, model)
    coded = np.add.reduceat((q != 0).astype(int), layout.starts[:-1]) > 0
    asked = coded[:, None] & layout.has_band
    bits += flags[..., 1][asked & significant].sum() + flags[..., 0][asked & ~significant].sum()
    stream = 8 * len(R.encode(layout, q, model))
    assert 0.9 * stream < bits <= stream, (bits, stream)


def test_lambda_zero_is_rounding_and_no_magnitude_grows(tile):
    layout, coefficients = tile
    step = 0.004
    rounded = R.quantise(coefficients, step, 0.5)
    assert np.array_equal(rd_quantise([(layout, coefficients)], step, 0.0)[0], rounded)
    chosen = rd_quantise([(layout, coefficients)], step, 0.2)[0]
    assert np.all(np.abs(chosen) <= np.abs(rounded))
    assert np.all(chosen * rounded >= 0)  # no sign flips
    assert 0 < np.count_nonzero(chosen) < np.count_nonzero(rounded)
    assert not rd_quantise([(layout, coefficients)], step, 1e6)[0].any()  # nothing pays at that price


def test_the_same_bytes_carry_less_error():
    shapes = [(24, 24, 16), (16, 17, 9)]
    residuals = [_textured(s, 1 + i) for i, s in enumerate(shapes)]
    targets = [r.astype(np.float32) for r in residuals]
    decoded = [np.zeros(s) for s in shapes]
    room = 1500
    errors = {}
    for rd in (None, 0.2):
        model, streams, _ = code_residual(targets, decoded, [None, None], room, rd_lambda=rd,
                                       blocks=[(8, 8, 8)])
        assert 0.95 * room < sum(map(len, streams)) <= room
        errors[rd] = _error(targets, model, streams)
    assert errors[0.2] < 0.97 * errors[None], errors


def _error(targets, model, streams):
    """The squared error a reader leaves: each tile decoded with the model's own block shape."""
    error = 0.0
    for target, stream in zip(targets, streams):
        layout = R.tile_layout(target.shape, None, model.block)
        q = R.decode(stream, layout, model)
        error += float(((target - B.reconstruct(layout, q, model.step)) ** 2).sum())
    return error


def test_the_block_shape_that_codes_best_is_kept():
    """Models 11 and 12: a residual smooth within slices and rough across them codes better in blocks
    thin along axis 0; the encoder keeps such a shape, and it beats 8³ in the same bytes."""
    rng = np.random.default_rng(7)
    shapes = [(16, 64, 64), (12, 40, 56)]
    targets = []
    for shape in shapes:
        field = gaussian_filter(rng.normal(size=shape), (0.6, 6.0, 6.0))
        targets.append((0.05 * field / np.abs(field).max()).astype(np.float32))
    decoded = [np.zeros(s) for s in shapes]
    room = 2500
    chosen, streams, error = code_residual(targets, decoded, [None, None], room)
    cubic, cubic_streams, _ = code_residual(targets, decoded, [None, None], room, blocks=[(8, 8, 8)])
    assert error == pytest.approx(_error(targets, chosen, streams), rel=1e-4)  # the error it reports
    assert chosen.block != (8, 8, 8)
    assert chosen.block[0] < chosen.block[1]
    assert sum(map(len, streams)) <= room
    assert _error(targets, chosen, streams) < 0.8 * _error(targets, cubic, cubic_streams)


def test_the_rate_distortion_pass_picks_between_the_best_shapes(monkeypatch):
    """The shape with the least dead-zone error is not always the best after the rate–distortion
    pass (a field where 2×32×32 leads before it and 4×16×16 by far after it, at a small budget): the
    best ``RD_SHAPES`` shapes get the pass and the least error is kept."""
    import napari_sci.core.grid_residual as G

    rng = np.random.default_rng(34)
    sigma = rng.uniform(0.5, 3), rng.uniform(0.5, 6), rng.uniform(0.5, 6)
    shape = (16, 32, 32)
    field = gaussian_filter(rng.normal(size=shape), sigma)
    spots = rng.normal(size=shape) * (rng.random(shape) < 0.01)
    target = (0.05 * field / np.abs(field).max() + 0.02 * spots).astype(np.float32)
    room = int(rng.integers(400, 3000))
    blocks = [(8, 8, 8), (4, 16, 16), (2, 32, 32)]
    kept = {}
    for shapes in (1, 2):
        monkeypatch.setattr(G, "RD_SHAPES", shapes)
        model, streams, error = code_residual([target], [np.zeros(shape)], [None], room, blocks=blocks)
        assert sum(map(len, streams)) <= room
        assert error == pytest.approx(_error([target], model, streams), rel=1e-4)
        kept[shapes] = model.block, error
    assert kept[1][0] != kept[2][0], kept
    assert kept[2][1] < 0.8 * kept[1][1], kept
