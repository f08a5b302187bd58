"""The latent-grid family: the numpy decoder agrees with the training model, latents code losslessly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sci.base.grid_geometry import GridLayout, latent_count, level_shape, levels_for
from napari_sci.errors import SciFormatError
from napari_sci.io.latents import decode_tile, encode_tile, tile_length_ok
from napari_sci.models.grid import GridTiles, evaluate_tile_box, interpolate_box
from napari_sci.models.grid_latents import PackedLatents
from napari_sci.models.grid_net import Synthesis, laplace_bits
from napari_sci.models.grid_quant import best_scale_code, laplace_bits_np, synthesis_payload

LAYOUT = GridLayout(levels=5, hidden=8, layers=3)


def _random_latents(shapes, seed=0) -> PackedLatents:
    generator = torch.Generator().manual_seed(seed)
    latents = PackedLatents(shapes, LAYOUT)
    with torch.no_grad():
        latents.flat.copy_(torch.randn(latents.flat.shape, generator=generator) * 3)
    return latents


def _tile_features(latents: PackedLatents, flat: torch.Tensor, tile: int) -> torch.Tensor:
    return latents.features(flat, latents.whole_tile(tile))


def _interpolated(grid: torch.Tensor, level: int, shape) -> torch.Tensor:
    """torch's own interpolation of one level to the tile (the reference the gather must match)."""
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape)]
    up = torch.nn.functional.interpolate(grid[None, None], scale_factor=float(1 << level), mode=mode,
                                         align_corners=False, recompute_scale_factor=False)[0, 0]
    return up[tuple(slice(0, s) for s in shape)].reshape(-1)


@pytest.mark.parametrize("shape", [(13, 20, 7), (1, 33, 17), (9, 9, 9), (24, 10)])
def test_gathered_interpolated_and_numpy_features_agree(shape):
    latents = _random_latents([(4, 4, 4)[:len(shape)], shape])  # the tile after another one
    flat = latents.quantised("hard").detach()
    full = _tile_features(latents, flat, 1)
    grids = latents.tile_grids(flat, 1)
    assert full.shape == (np.prod(shape), LAYOUT.levels)
    box = tuple((0, s) for s in shape)
    for level, grid in enumerate(grids):
        if level:
            torch.testing.assert_close(full[:, level], _interpolated(grid, level, shape), atol=1e-5,
                                       rtol=0)
        numpy_level = interpolate_box(grid.numpy(), level, shape, box).reshape(-1)
        np.testing.assert_allclose(numpy_level, full[:, level].numpy(), atol=1e-5)
    assert torch.all(full[:, len(grids):] == 0)  # levels a small tile lacks are zero features


def test_sampled_voxels_see_the_features_of_their_own_tile():
    shapes = [(5, 6, 7), (8, 3, 9), (2, 2, 2)]
    latents = _random_latents(shapes, seed=1)
    flat = latents.quantised("hard").detach()
    sample = latents.sample(500, torch.Generator().manual_seed(0))
    assert torch.all(sample.flat[1:] >= sample.flat[:-1])  # drawn in memory order
    assert set(sample.tile.tolist()) == {0, 1, 2}
    features = latents.features(flat, sample)
    wholes = [_tile_features(latents, flat, t) for t in range(len(shapes))]
    for k in range(0, 500, 17):
        t = int(sample.tile[k])
        local = int(np.ravel_multi_index(tuple(sample.voxel[k].tolist()), shapes[t]))
        assert int(sample.flat[k]) == int(latents.tile_start[t]) + local
        torch.testing.assert_close(features[k], wholes[t][local])


def test_gradients_reach_only_the_latents_a_sample_touches():
    latents = _random_latents([(8, 8, 8), (8, 8, 8)])
    sample = latents.whole_tile(1)
    latents.features(latents.flat, sample).sum().backward()
    assert all(torch.all(g == 0) for g in latents.tile_grids(latents.flat.grad, 0))
    assert torch.all(latents.tile_grids(latents.flat.grad, 1)[0] != 0)


def test_the_rate_is_each_tile_levels_laplace_at_its_own_scale():
    latents = _random_latents([(16, 16, 16), (9, 12, 5)])
    flat = latents.quantised("hard").detach()
    by_level = sum(float(laplace_bits(g.reshape(-1), g.abs().mean()).sum())
                   for t in range(2) for g in latents.tile_grids(flat, t))
    assert float(latents.bits(flat)) == pytest.approx(by_level, rel=1e-5)


def test_a_box_decodes_as_the_same_part_of_the_whole_tile():
    shape = (12, 20, 16)
    packed = _random_latents([shape])
    latents = [np.rint(g.detach().numpy()).astype(np.int32) for g in packed.tile_grids(packed.flat, 0)]
    synthesis = Synthesis(LAYOUT)
    weights = [t.astype(np.float32) for t in synthesis.flat_tensors()]
    whole = evaluate_tile_box(latents, weights, LAYOUT, shape, tuple((0, s) for s in shape))
    part = evaluate_tile_box(latents, weights, LAYOUT, shape, ((3, 4), (5, 17), (0, 16)))
    np.testing.assert_allclose(part, whole[3:4, 5:17, 0:16], atol=1e-6)
    with torch.no_grad():
        flat = packed.pack([latents])
        torch_values = synthesis(_tile_features(packed, flat, 0)).numpy().reshape(shape)
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
    packed = _random_latents([shape])
    latents = [np.rint(g.detach().numpy()).astype(np.int32) for g in packed.tile_grids(packed.flat, 0)]
    synthesis = Synthesis(LAYOUT)
    from napari_sci.io.weights import TensorCode

    codes = [TensorCode(16 * 9, 64) for _ in LAYOUT.tensor_sizes()]
    section = synthesis_payload(synthesis.flat_tensors(), codes, LAYOUT)
    payload = encode_tile(latents, [best_scale_code(g.reshape(-1)) for g in latents])
    tiles = GridTiles(LAYOUT, section, [payload], [shape], low=100.0, span=50.0)
    normalised = GridTiles(LAYOUT, section, [payload], [shape]).evaluate(0, ((0, 6), (0, 8), (0, 8)))
    np.testing.assert_allclose(tiles.evaluate(0, ((0, 6), (0, 8), (0, 8))), 100 + 50 * normalised,
                               rtol=1e-5)


def _random_trainer(volume: np.ndarray, tiles, samples: int, **settings):
    """A trainer on ``volume``'s ``tiles`` whose latents are random (not the zeros of a new fit)."""
    from napari_sci.base.config import GridConfig
    from napari_sci.models.grid_fit import GridTrainer

    config = GridConfig(grid_samples=samples, **settings)
    layout = GridLayout(LAYOUT.levels, LAYOUT.hidden, LAYOUT.layers, config.upsampling)
    trainer = GridTrainer(volume, tiles, layout, config, 0, torch.device("cpu"))
    with torch.no_grad():
        trainer.latents.flat.copy_(torch.randn(trainer.latents.numel(), generator=trainer.generator))
    return trainer


@pytest.mark.parametrize(("entropy", "upsampling"), [("context", "linear"), ("predictive", "linear"),
                                                    ("context", "bspline")])
def test_the_compiled_step_computes_the_eager_loss_and_gradients(entropy, upsampling):
    volume = np.random.default_rng(0).random((16, 20, 12)).astype(np.float32)
    tiles = [(slice(0, 8), slice(0, 20), slice(0, 12)), (slice(8, 16), slice(0, 20), slice(0, 12))]
    trainer = _random_trainer(volume, tiles, samples=1024, sparse_fine=False, entropy=entropy,
                              upsampling=upsampling, finest_level=0)
    if trainer.latents.mean:
        trainer.latents.refresh_contexts()
        with torch.no_grad():
            trainer.latents.mean_weights.fill_(0.3)
    flat = trainer.latents.quantised("noise", trainer.generator)
    sample = trainer.latents.sample(700, trainer.generator)
    centre = trainer.latents.rate_centres()
    args = (flat, sample.tile, sample.voxel, trainer.target[sample.flat],
            trainer.latents.rate_terms(flat, centre), centre)
    results = []
    for compiled in (False, True):
        if compiled:
            trainer.enable_compile()
        sse, bits = trainer._terms(*args)
        grad = torch.autograd.grad(sse + bits, trainer.latents.flat, retain_graph=True)[0]
        results.append((sse.detach(), bits.detach(), grad))
    assert trainer.compile_error is None
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shapes", [[(8, 20, 12), (8, 20, 12)], [(9, 13), (3, 13)]])
def test_the_every_voxel_step_has_the_gradient_of_the_gather_over_every_voxel(shapes, monkeypatch):
    """The dense step (levels upsampled whole, back-propagated tile by tile and chunk by chunk) must
    be the exact full-volume loss and gradient that the per-voxel gather defines."""
    from napari_sci.models import grid_fit

    monkeypatch.setattr(grid_fit, "EVAL_CHUNK", 500)  # several chunks per tile
    volume = np.random.default_rng(0).random((sum(s[0] for s in shapes), *shapes[0][1:])).astype(np.float32)
    tiles, start = [], 0
    for s in shapes:
        tiles.append((slice(start, start + s[0]), *(slice(0, n) for n in s[1:])))
        start += s[0]
    trainer = _random_trainer(volume, tiles, samples=0)
    lam = 0.3
    loss = trainer._dense_backward("ste", lam)
    dense = [p.grad.clone() for p in (trainer.latents.flat, *trainer.synthesis.parameters())]

    trainer.optimiser.zero_grad(set_to_none=True)
    flat = trainer.latents.quantised("ste")
    sse = sum(torch.sum((trainer.synthesis(_tile_features(trainer.latents, flat, t))
                         - trainer.target[int(trainer.latents.tile_start[t]):
                                          int(trainer.latents.tile_start[t + 1])]) ** 2)
              for t in range(len(tiles)))
    reference = (sse + lam * trainer.latents.bits(flat)) / volume.size
    reference.backward()
    torch.testing.assert_close(loss, reference.detach(), rtol=1e-5, atol=1e-7)
    for got, want in zip(dense, (p.grad for p in (trainer.latents.flat, *trainer.synthesis.parameters()))):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_the_compiled_every_voxel_step_has_the_eager_gradient():
    volume = np.random.default_rng(1).random((12, 20, 16)).astype(np.float32)
    tiles = [(slice(0, 12), slice(0, 20), slice(0, 9)), (slice(0, 12), slice(0, 20), slice(9, 16))]
    trainer = _random_trainer(volume, tiles, samples=0)
    results = []
    for compiled in (False, True):
        if compiled:
            trainer.enable_compile()
        trainer.optimiser.zero_grad(set_to_none=True)
        loss = trainer._dense_backward("ste", 0.2)
        params = (trainer.latents.flat, *trainer.synthesis.parameters())
        results.append([loss, *(p.grad.clone() for p in params)])
    assert trainer.compile_error is None
    assert trainer._compiled is not None
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)


def test_untrained_finer_levels_are_zero_features_and_zero_arrays():
    """``finest_level = 1`` allocates no full-resolution latents; what the synthesis sees and what the
    file codes are those of a full pyramid whose level 0 is zero."""
    shapes = [(20, 33, 17), (6, 8, 9), (1, 1, 1)]
    full, coarse = PackedLatents(shapes, LAYOUT), PackedLatents(shapes, LAYOUT, finest_level=1)
    assert coarse.numel() == full.numel() - sum(np.prod(s) for s in shapes[:2])
    assert coarse.tile_first == [1, 1, 0]  # a one-voxel tile's only level is trained
    rng = np.random.default_rng(3)
    levels = [[rng.normal(size=g.shape).astype(np.float32) for g in tile] for tile in full.tile_arrays()]
    for tile in levels[:2]:
        tile[0][:] = 0
    flat_full, flat_coarse = full.pack(levels), coarse.pack(levels)
    sample = full.sample(900, torch.Generator().manual_seed(0))
    torch.testing.assert_close(coarse.features(flat_coarse, sample), full.features(flat_full, sample))
    for tile in range(len(shapes)):
        torch.testing.assert_close(coarse.dense_features(flat_coarse, tile),
                                   full.dense_features(flat_full, tile))
    with torch.no_grad():
        coarse.flat.copy_(flat_coarse)
    for want, got in zip(levels, coarse.tile_arrays()):
        assert [g.shape for g in got] == [g.shape for g in want]
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)


def test_a_trainer_with_coarse_levels_only_feeds_the_synthesis_no_level_zero_weight():
    from napari_sci.base.config import GridConfig
    from napari_sci.models.grid_fit import GridTrainer

    volume = np.random.default_rng(0).random((16, 20, 12)).astype(np.float32)
    tiles = [(slice(0, 16), slice(0, 20), slice(0, 12))]
    trainer = GridTrainer(volume, tiles, LAYOUT, GridConfig(finest_level=2, grid_samples=512), 0,
                          torch.device("cpu"))
    for _ in range(3):
        trainer.step(1e-2, "noise", 1e-3)
    first_layer = trainer.synthesis.linears[0].weight
    assert torch.all(first_layer[:, :2] == 0)   # zero inputs: no gradient, and coded as zeros
    assert torch.any(first_layer[:, 2:] != 0)
    assert trainer.latents.numel() == sum(np.prod(level_shape((16, 20, 12), level)) for level in range(2, 5))


def test_filling_rounds_up_the_latents_nearest_the_threshold_until_the_budget_is_full():
    """Latents piled up just under ½ (what straight-through training leaves) make the coded size
    jump between latent steps; the fill spends the rest of the budget on the nearest of them."""
    from napari_sci.models.grid_quant import fill_to_budget, latents_at, tile_payload

    rng = np.random.default_rng(0)
    raw = [[rng.laplace(scale=0.3, size=(24, 24, 24)).astype(np.float32),
            rng.laplace(scale=2.0, size=(12, 12, 12)).astype(np.float32)],
           [rng.laplace(scale=1.0, size=(10, 8, 8)).astype(np.float32)]]  # a second tile, no pile-up
    piled = rng.random(raw[0][0].shape) < 0.05
    raw[0][0][piled] = np.float32(0.499) * np.sign(rng.standard_normal(int(piled.sum())))
    latents = latents_at(raw, 1.0)
    payloads = [tile_payload(t) for t in latents]
    low = sum(map(len, payloads))
    high = sum(len(tile_payload(t)) for t in latents_at(raw, 0.99))
    assert high > 1.05 * low  # the jump the fill exists for
    budget = (low + high) // 2 + 100
    before = [[g.copy() for g in tile] for tile in latents]
    filled, count = fill_to_budget(latents, raw, budget, 100, payloads)
    assert 0.99 * (budget - 100) <= sum(map(len, filled)) <= budget - 100
    assert count > 0
    assert filled == [tile_payload(t) for t in latents]  # the payloads code the latents handed back
    moved = [[np.flatnonzero((a != b).reshape(-1)) for a, b in zip(now, then)]
             for now, then in zip(latents, before)]
    assert sum(m.size for tile in moved for m in tile) == count
    # only latents rounded down were moved, each by one step away from zero, the nearest first
    changed = moved[0][0]
    magnitude = np.abs(raw[0][0].reshape(-1))
    assert np.all(np.abs(latents[0][0].reshape(-1)[changed]) == np.abs(before[0][0].reshape(-1)[changed]) + 1)
    assert magnitude[changed].min() >= np.quantile(magnitude[magnitude % 1 < 0.5], 0.5)
    untouched, _ = fill_to_budget(latents, raw, sum(map(len, filled)) + 100, 100, filled)
    assert untouched == filled  # a full budget is left as it is


def test_trimming_zeroes_the_latents_nearest_the_threshold_until_the_file_fits():
    from napari_sci.models.grid_quant import latents_at, tile_payload, trim_to_budget

    rng = np.random.default_rng(1)
    raw = [[rng.laplace(scale=1.5, size=(16, 16, 16)).astype(np.float32),
            rng.laplace(scale=3.0, size=(8, 8, 8)).astype(np.float32)],
           [rng.laplace(scale=1.0, size=(10, 8, 8)).astype(np.float32)]]
    latents = latents_at(raw, 1.0)
    before = [[g.copy() for g in tile] for tile in latents]
    size = sum(len(tile_payload(t)) for t in latents)
    budget = int(0.8 * size) + 100
    trimmed, zeroed = trim_to_budget(latents, raw, budget, 100)
    assert sum(map(len, trimmed)) <= budget - 100
    assert trimmed == [tile_payload(t) for t in latents]  # the payloads code the latents handed back
    now = np.concatenate([g.reshape(-1) for tile in latents for g in tile])
    then = np.concatenate([g.reshape(-1) for tile in before for g in tile])
    magnitude = np.abs(np.concatenate([g.reshape(-1) for tile in raw for g in tile]))
    changed = np.flatnonzero(now != then)
    assert changed.size == zeroed > 0
    assert np.all(now[changed] == 0)
    kept = (now != 0)
    assert magnitude[changed].max() <= magnitude[kept].min()  # the least costly in error went first
    again, none = trim_to_budget(latents, raw, budget, 100, trimmed)
    assert (again, none) == (trimmed, 0)  # a file that fits is left as it is


def test_training_noise_is_uniform_fresh_each_step_and_seeded():
    latents = PackedLatents([(6, 7, 5), (3, 4, 4)], LAYOUT)

    def draws(seed: int, count: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        fresh = PackedLatents([(6, 7, 5), (3, 4, 4)], LAYOUT)
        return torch.stack([fresh.quantised("noise", generator).detach() for _ in range(count)])

    noise = draws(0, 400)
    assert noise.shape == (400, latents.numel())
    assert float(noise.min()) >= -0.5
    assert float(noise.max()) < 0.5
    assert not torch.equal(noise[0], noise[1])
    # each latent's draws over the steps cover [−½, ½) evenly, and two latents are uncorrelated
    for column in (0, latents.numel() - 1):
        counts = torch.histc(noise[:, column], bins=4, min=-0.5, max=0.5)
        assert torch.all((counts > 60) & (counts < 140)), counts
    correlation = torch.corrcoef(noise[:, :2].T)[0, 1]
    assert abs(float(correlation)) < 0.2
    torch.testing.assert_close(draws(0, 3), noise[:3])
    assert not torch.equal(draws(1, 1)[0], noise[0])


def test_the_full_resolution_level_is_trained_only_for_volumes_with_fine_detail():
    from napari_sci.base.config import GridConfig
    from napari_sci.models.grid_fit import GridTrainer, choose_finest_level, fine_detail_share

    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in (20, 31, 24)), indexing="ij")
    smooth = (np.sin(3 * x + 2 * y) * np.cos(4 * z)).astype(np.float32)
    speckled = smooth + np.random.default_rng(0).normal(scale=0.5, size=smooth.shape).astype(np.float32)
    assert fine_detail_share(smooth) < 0.01
    assert fine_detail_share(speckled) > 0.3
    assert fine_detail_share(np.full((5, 6, 7), 3.0)) == 0.0
    assert (choose_finest_level(smooth), choose_finest_level(speckled)) == (1, 0)
    assert choose_finest_level(speckled[3]) == 0  # images too
    tiles = [(slice(0, 20), slice(0, 31), slice(0, 24))]
    for volume, level in ((smooth, 1), (speckled, 0)):
        trainer = GridTrainer(volume, tiles, LAYOUT, GridConfig(grid_samples=256), 0, torch.device("cpu"))
        assert trainer.finest_level == level
        assert trainer.latents.tile_first == [level]
    forced = GridTrainer(smooth, tiles, LAYOUT, GridConfig(finest_level=0, grid_samples=256), 0,
                         torch.device("cpu"))
    assert forced.latents.tile_first == [0]


def test_the_rounding_phase_once_started_stays_when_the_step_estimate_grows():
    from napari_sci.base.config import GridConfig
    from napari_sci.models.grid_fit import FINAL_LR, Schedule

    schedule = Schedule(GridConfig(ste_fraction=0.2))
    assert schedule(10, 100)[1] == "noise"
    assert schedule(85, 100) == (FINAL_LR, "ste")
    # a time-limited fit re-estimates its total; a larger estimate must not bring the noise back
    assert schedule(86, 200) == (FINAL_LR, "ste")
    fresh = Schedule(GridConfig(ste_fraction=0.2))
    lr, mode = fresh(86, 200)
    assert mode == "noise"
    assert lr > FINAL_LR


def test_the_rounding_phase_is_a_share_of_the_steps_up_to_a_cap():
    from napari_sci.base.config import GridConfig
    from napari_sci.models.grid_fit import Schedule

    def rounding_steps(total: int, **settings) -> int:
        schedule = Schedule(GridConfig(ste_fraction=0.2, **settings))
        return sum(schedule(step, total)[1] == "ste" for step in range(total))

    assert rounding_steps(1000) == 200
    assert rounding_steps(5000) == 400          # capped: long fits piled latents up at ±½
    assert rounding_steps(5000, ste_max_steps=2000) == 1000


SPARSE_TILES = [(slice(0, 8), slice(0, 20), slice(0, 12)), (slice(8, 16), slice(0, 20), slice(0, 7)),
                (slice(8, 16), slice(0, 20), slice(7, 12))]


def test_level_zero_is_laid_out_like_the_voxels_and_gathers_as_the_whole_features():
    """Every tile's full-resolution level comes first, tile after tile, so ``flat[:fine_size]`` is
    indexed as the voxels are; features built from it and the coarser part equal the gather's."""
    shapes = [(6, 7, 8), (9, 4, 5), (1, 1, 2)]
    latents = _random_latents(shapes, seed=3)
    flat = latents.flat.detach()
    assert latents.fine_size == sum(int(np.prod(s)) for s in shapes)
    for t in range(len(shapes)):
        start, stop = int(latents.tile_start[t]), int(latents.tile_start[t + 1])
        assert torch.equal(flat[start:stop], latents.tile_grids(flat, t)[0].reshape(-1))
    sample = latents.sample(400, torch.Generator().manual_seed(2))
    split = latents.features_at(flat[latents.fine_size:], sample.tile, sample.voxel,
                                fine=flat[:latents.fine_size][sample.flat])
    torch.testing.assert_close(split, latents.features(flat, sample), rtol=0, atol=1e-6)
    arrays = latents.tile_arrays()
    assert torch.equal(latents.pack(arrays), flat)  # per-tile arrays go back to the same places


def test_the_rounded_rate_from_histograms_is_the_estimate_of_the_rounded_latents():
    latents = _random_latents([(16, 16, 16), (9, 12, 5)], seed=4)
    with torch.no_grad():
        latents.flat.mul_(torch.rand(latents.flat.shape, generator=torch.Generator().manual_seed(1)))
    expected = float(latents.bits(latents.quantised("hard")).detach())
    assert latents.rounded_bits() == pytest.approx(expected, rel=1e-5)


def _every_voxel_once(trainer):
    """Make ``trainer`` draw every trained voxel exactly once per step (so the sparse step's estimate
    is the whole sum)."""
    whole = [trainer.latents.whole_tile(t) for t in range(len(trainer.latents.shapes))]
    every = type(whole[0])(*(torch.cat([getattr(w, f) for w in whole]) for f in ("tile", "voxel", "flat")))
    trainer.latents.sample = lambda count, generator=None: every
    return every


def test_the_sparse_step_over_every_voxel_has_the_full_steps_loss_and_gradients():
    """Drawing every voxel once, the level-0 part of the sparse step (each voxel's own latent, its
    rate weighted by the share drawn) must give the loss and gradients of the step that quantises
    and rates every latent."""
    from napari_sci.models.grid_latents import quantise

    volume = np.random.default_rng(2).random((16, 20, 12)).astype(np.float32)
    trainer = _random_trainer(volume, SPARSE_TILES, samples=1 << 20, finest_level=0, sparse_fine=True,
                              entropy="factorised")
    assert trainer.n_fine == volume.size
    every = _every_voxel_once(trainer)
    lam = 0.7
    loss, index, fine_grad = trainer._sparse_backward("ste", lam)
    got = [trainer.coarse.grad.clone(), *(p.grad.clone() for p in trainer.synthesis.parameters())]

    trainer.optimiser.zero_grad(set_to_none=True)
    flat = trainer.latents.flat
    q = quantise(flat, "ste")
    sse, bits = trainer._sampled_terms(q, every.tile, every.voxel, trainer.target[every.flat],
                                       trainer.latents.rate_terms(q), trainer.latents.rate_centres())
    reference = (sse + lam * bits) / volume.size
    reference.backward()
    torch.testing.assert_close(loss.detach(), reference.detach(), rtol=1e-5, atol=1e-7)
    fine = torch.zeros(trainer.n_fine).index_add_(0, index, fine_grad)
    torch.testing.assert_close(fine, flat.grad[:trainer.n_fine], rtol=1e-4, atol=1e-7)
    want = [flat.grad[trainer.n_fine:], *(p.grad for p in trainer.synthesis.parameters())]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_a_sparse_step_moves_only_the_level_zero_latents_its_voxels_touch():
    volume = np.random.default_rng(3).random((16, 20, 12)).astype(np.float32)
    trainer = _random_trainer(volume, SPARSE_TILES, samples=300, finest_level=0, sparse_fine=True,
                              entropy="factorised")
    drawn = []
    sample = trainer.latents.sample
    trainer.latents.sample = lambda count, generator=None: drawn.append(sample(count, generator)) or drawn[-1]
    before = trainer.latents.flat.detach().clone()
    trainer.step(1e-2, "noise", 0.5)
    after = trainer.latents.flat.detach()
    moved = torch.nonzero(after[:trainer.n_fine] != before[:trainer.n_fine]).reshape(-1)
    touched = torch.unique(drawn[0].flat)
    assert 0 < touched.numel() < trainer.n_fine
    assert torch.equal(moved, touched)
    assert torch.equal(torch.nonzero(trainer.fine_moments[2]).reshape(-1), touched)  # update counts
    assert bool(torch.all(after[trainer.n_fine:] != before[trainer.n_fine:]))  # Adam moves every coarse one


def test_the_compiled_sparse_step_computes_the_eager_loss_and_gradients():
    from napari_sci.models.grid_latents import quantise

    volume = np.random.default_rng(4).random((16, 20, 12)).astype(np.float32)
    trainer = _random_trainer(volume, SPARSE_TILES, samples=900, finest_level=0, sparse_fine=True,
                              entropy="factorised")
    sample = trainer.latents.sample(700, trainer.generator)
    own = trainer.fine[sample.flat].requires_grad_()
    coarse = quantise(trainer.coarse, "noise", trainer.generator)
    fine = quantise(own, "noise", trainer.generator)
    args = (coarse, fine, sample.tile, sample.voxel, trainer.target[sample.flat],
            trainer.latents.coarse_rate_terms(coarse), torch.full((700,), 0.7))
    results = []
    for compiled in (False, True):
        if compiled:
            trainer.enable_compile()
        sse, coarse_bits, fine_bits = trainer._run_compiled(trainer._sparse_terms, *args)
        grads = torch.autograd.grad(sse + coarse_bits + 3 * fine_bits, (trainer.coarse, own),
                                    retain_graph=True)
        results.append((sse.detach(), coarse_bits.detach(), fine_bits.detach(), *grads))
    assert trainer.compile_error is None
    assert trainer._compiled is not None
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def test_the_context_rate_starts_as_the_factorised_one_and_its_slopes_learn():
    """Model 3's rate with zero slopes is model 2's; contexts are those of the rounded latents (the
    file's); a few steps move the slopes, the scale the neighbourhood bin buys."""
    from napari_sci.base.config import GridConfig
    from napari_sci.io.latent_context import level_contexts
    from napari_sci.models.grid_fit import GridTrainer

    shapes = [(12, 10, 9), (7, 12, 5)]
    plain = _random_latents(shapes, seed=2)
    context = PackedLatents(shapes, LAYOUT, context=True)
    with torch.no_grad():
        shrink = torch.rand(plain.flat.shape, generator=torch.Generator().manual_seed(3))
        context.flat.copy_(plain.flat * shrink)
        plain.flat.copy_(context.flat)
    context.refresh_contexts()
    flat = plain.quantised("hard")
    factorised = plain.rate_terms(flat)
    coded = factorised > 2 ** (1 / 16 - 6)  # the smallest scale a file's code (1 … 255) can hold
    assert coded.float().mean() > 0.9
    torch.testing.assert_close(context.rate_terms(flat)[coded], factorised[coded])
    grids = [np.rint(g).astype(np.int64) for g in context.tile_arrays()[1]]
    start, size, _ = context.segments[context.tile_segments[1][1]]
    want = level_contexts(grids[1], grids[2] if grids[2].any() else None)
    got = context.contexts[:, start:start + size].numpy()
    for k in range(3):
        np.testing.assert_array_equal(got[k], want[k].reshape(-1).astype(np.float32))

    volume = np.random.default_rng(0).random((16, 20, 12)).astype(np.float32)
    volume[:8] = 0  # half empty: the neighbourhood predicts where latents are zero
    tiles = [(slice(0, 16), slice(0, 20), slice(0, 12))]
    trainer = GridTrainer(volume, tiles, LAYOUT, GridConfig(grid_samples=1024), 0, torch.device("cpu"))
    for _ in range(30):
        trainer.step(1e-2, "noise", 1e-2)
    assert torch.any(trainer.latents.entropy != 0)
    assert trainer.latents.context_model().levels == LAYOUT.levels


def test_the_predictive_rate_is_the_context_one_about_fitted_means():
    """Model 4's rate with zero mean weights is model 3's; its features are the file's (the coarser
    value and the neighbour means of the rounded latents), its centres the level's weights times them;
    on smooth latents the fitted weights bring the latents closer to their centres than zero does,
    and the file's model carries them in 1/32."""
    from scipy.ndimage import gaussian_filter

    from napari_sci.io.latent_context import level_mean_features

    shapes = [(12, 10, 9), (7, 12, 5)]
    context = PackedLatents(shapes, LAYOUT, context=True)
    predictive = PackedLatents(shapes, LAYOUT, context=True, mean=True)
    arrays = [[gaussian_filter(np.random.default_rng(t).normal(size=g.shape) * 20, 1.0) for g in tile]
              for t, tile in enumerate(context.tile_arrays())]
    with torch.no_grad():
        context.flat.copy_(context.pack(arrays))
        predictive.flat.copy_(context.flat)
    context.refresh_contexts()
    predictive.refresh_contexts()
    grids = [np.rint(g).astype(np.int64) for g in predictive.tile_arrays()[0]]
    start, size, _ = predictive.segments[predictive.tile_segments[0][1]]
    want = level_mean_features(grids[1], grids[2] if grids[2].any() else None).reshape(4, -1)
    np.testing.assert_allclose(predictive.mean_features[:, start:start + size].numpy(), want)
    weights = predictive.mean_weights[1].numpy()
    np.testing.assert_allclose(predictive.centre[start:start + size].numpy(), weights @ want, rtol=1e-5,
                               atol=1e-5)
    flat = context.quantised("hard").detach()
    fitted = float((flat - predictive.rate_centres()).abs().sum())
    assert fitted < 0.8 * float(flat.abs().sum())
    assert float(predictive.bits(flat).detach()) < float(context.bits(flat).detach())
    model = predictive.context_model()
    assert model.mean is not None
    np.testing.assert_array_equal(model.mean_array(),
                                  np.clip(np.rint(32 * predictive.mean_weights.numpy()), -127, 127))
    with torch.no_grad():
        predictive.mean_weights.zero_()
        predictive.centre.zero_()
    torch.testing.assert_close(predictive.bits(flat), context.bits(flat))


def test_threads_reading_one_tile_decode_it_once_and_different_tiles_at_once(monkeypatch):
    """Each tile has its own lock: eight threads asking for one tile's latents and residual decode
    them once, and a thread never waits for another tile's decoding (dask reads chunks in threads)."""
    import threading
    from pathlib import Path

    from napari_sci.core.lazy import open_sci
    from napari_sci.io import latent_context
    from napari_sci.io import residual as residual_coding

    path = Path(__file__).parents[1] / "data" / "golden_v3_context_bspline_residual_shaped.sci"
    tiles = open_sci(path)._decoder.models
    coded = [i for i in range(len(tiles.payloads)) if not tiles.exact[i]]
    assert len(coded) >= 2
    calls = {"latents": 0, "residual": 0}
    inside = threading.Event()
    release = threading.Event()
    decode_tile, decode_residual = latent_context.decode_tile, residual_coding.decode

    def slow_latents(payload, *args):
        calls["latents"] += 1
        if payload == residual_coding.split_payload(tiles.payloads[coded[0]])[0]:
            inside.set()
            assert release.wait(10)  # tile 0 stays busy until another tile has decoded
        return decode_tile(payload, *args)

    def counted_residual(*args):
        calls["residual"] += 1
        return decode_residual(*args)

    monkeypatch.setattr(latent_context, "decode_tile", slow_latents)
    monkeypatch.setattr(residual_coding, "decode", counted_residual)
    readers = [threading.Thread(target=tiles.residual_coefficients, args=(coded[0],)) for _ in range(8)]
    for reader in readers:
        reader.start()
    assert inside.wait(10)
    other = threading.Thread(target=tiles.latents, args=(coded[1],))  # while tile 0 is being decoded
    other.start()
    other.join(5)
    finished = not other.is_alive()
    release.set()
    other.join(10)
    assert finished, "another tile's decoding waited for tile 0's"
    for reader in readers:
        reader.join(10)
    assert calls == {"latents": 2, "residual": 1}
