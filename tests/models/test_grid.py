"""The latent-grid family: the numpy decoder agrees with the training model, latents code losslessly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sci.base.grid_geometry import GridLayout, latent_count, level_shape, levels_for
from napari_sci.errors import SciFormatError
from napari_sci.io.latents import decode_tile, encode_tile, tile_length_ok
from napari_sci.models.grid import GridTiles, evaluate_tile_box, interpolate_box
from napari_sci.models.grid_net import Synthesis, TilePyramid, laplace_bits
from napari_sci.models.grid_quant import best_scale_code, laplace_bits_np, synthesis_payload

LAYOUT = GridLayout(levels=5, hidden=8, layers=3)


def _random_pyramid(shape, seed=0) -> TilePyramid:
    generator = torch.Generator().manual_seed(seed)
    pyramid = TilePyramid(shape, LAYOUT)
    with torch.no_grad():
        for latent in pyramid.latents:
            latent.copy_(torch.randn(latent.shape, generator=generator) * 3)
    return pyramid


@pytest.mark.parametrize("shape", [(13, 20, 7), (1, 33, 17), (9, 9, 9)])
def test_full_sampled_and_numpy_features_agree(shape):
    pyramid = _random_pyramid(shape)
    grids = [g.detach() for g in pyramid.quantised("hard")]
    full = pyramid.features(grids)
    flat = torch.arange(full.shape[0])[::7]
    voxels = torch.stack(torch.unravel_index(flat, shape), dim=-1)
    assert torch.equal(pyramid.sampled_features(grids, voxels), full[flat])
    box = tuple((0, s) for s in shape)
    for level, grid in enumerate(grids):
        numpy_level = interpolate_box(grid.numpy(), level, shape, box).reshape(-1)
        np.testing.assert_allclose(numpy_level, full[:, level].numpy(), atol=1e-5)


def test_a_box_decodes_as_the_same_part_of_the_whole_tile():
    shape = (12, 20, 16)
    latents = [np.rint(g.detach().numpy()).astype(np.int32) for g in _random_pyramid(shape).latents]
    synthesis = Synthesis(LAYOUT)
    weights = [t.astype(np.float32) for t in synthesis.flat_tensors()]
    whole = evaluate_tile_box(latents, weights, LAYOUT, shape, tuple((0, s) for s in shape))
    part = evaluate_tile_box(latents, weights, LAYOUT, shape, ((3, 4), (5, 17), (0, 16)))
    np.testing.assert_allclose(part, whole[3:4, 5:17, 0:16], atol=1e-6)
    with torch.no_grad():
        grids = [torch.from_numpy(g.astype(np.float32)) for g in latents]
        torch_values = synthesis(_random_pyramid(shape).features(grids)).numpy().reshape(shape)
    np.testing.assert_allclose(whole, torch_values, atol=1e-4)


def test_tile_latents_round_trip_exactly_and_skip_zero_levels():
    shape = (5, 9, 7)
    rng = np.random.default_rng(0)
    n = levels_for(shape, 7)
    latents = [np.rint(rng.laplace(0, 1.5, level_shape(shape, level))).astype(np.int32) for level in range(n)]
    latents[1][:] = 0
    payload = encode_tile(latents, [best_scale_code(g.reshape(-1)) for g in latents])
    assert payload[1] == 0  # an all-zero level costs its code byte only
    decoded = decode_tile(payload, shape, 7)
    assert all(np.array_equal(a, b) for a, b in zip(latents, decoded))
    assert tile_length_ok(len(payload), shape, 7)
    ideal = sum(laplace_bits_np(g.reshape(-1), 2.0 ** (payload[i] / 16 - 6))
                for i, g in enumerate(latents) if payload[i])
    assert len(payload) - n <= ideal / 8 + 8  # the ANS stream costs its ideal length plus a word


def test_malformed_tile_payloads_are_refused():
    shape = (4, 4, 4)
    with pytest.raises(SciFormatError):
        decode_tile(b"\x01", shape, 7)
    with pytest.raises(SciFormatError):
        decode_tile(bytes([40, 40, 40]) + b"\x00\x00", shape, 7)
    assert not tile_length_ok(3 + 4 * latent_count(shape, 7) + 8, shape, 7)


def test_rate_estimate_matches_the_numpy_one():
    values = torch.tensor([0.0, 1.0, -3.0, 7.0, 0.0])
    torch_bits = float(laplace_bits(values, torch.tensor(1.3)).sum())
    assert torch_bits == pytest.approx(laplace_bits_np(values.numpy(), 1.3), rel=1e-5)


def test_grid_tiles_evaluate_in_data_units():
    shape = (6, 8, 8)
    latents = [np.rint(g.detach().numpy()).astype(np.int32) for g in _random_pyramid(shape).latents]
    synthesis = Synthesis(LAYOUT)
    from napari_sci.io.weights import TensorCode

    codes = [TensorCode(16 * 9, 64) for _ in LAYOUT.tensor_sizes()]
    section = synthesis_payload(synthesis.flat_tensors(), codes, LAYOUT)
    payload = encode_tile(latents, [best_scale_code(g.reshape(-1)) for g in latents])
    tiles = GridTiles(LAYOUT, section, [payload], [shape], low=100.0, span=50.0)
    normalised = GridTiles(LAYOUT, section, [payload], [shape]).evaluate(0, ((0, 6), (0, 8), (0, 8)))
    np.testing.assert_allclose(tiles.evaluate(0, ((0, 6), (0, 8), (0, 8))), 100 + 50 * normalised,
                               rtol=1e-5)
