"""B-spline upsampling (format 3, models 5 and 6): the decoder follows the spec's sentences, the
trainer's gather and its every-voxel step compute the decoder's features (compiled = eager: test_grid)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_sci.base.config import GridConfig
from napari_sci.base.grid_geometry import GridLayout
from napari_sci.errors import SciConfigError
from napari_sci.models.grid import interpolate_box
from napari_sci.models.grid_fit import GridTrainer
from napari_sci.models.grid_latents import PackedLatents

LAYOUT = GridLayout(levels=5, hidden=8, layers=3, upsampling="bspline")


def _spec_axis(values: list[float], size: int, level: int, voxel: int) -> float:
    """docs/format.md "Models 5 and 6", one axis, sentence by sentence (plain Python)."""
    n = math.ceil(size / 2 ** level)
    h = math.ceil(size / 2)

    def spline(q: float) -> float:
        q = min(max(q, 0.0), n - 1.0)
        f = math.floor(q)
        t = q - f
        c = [(1 - t) ** 3 / 6, (4 - 6 * t * t + 3 * t ** 3) / 6, (1 + 3 * t + 3 * t * t - 3 * t ** 3) / 6,
             t ** 3 / 6]
        return sum(ck * values[min(max(f + k, 0), n - 1)] for ck, k in zip(c, (-1, 0, 1, 2)))

    def on_level_one(j: int) -> float:
        return spline((j + 0.5) / 2 ** (level - 1) - 0.5)

    if level == 1:  # at the voxel itself
        return spline((voxel + 0.5) / 2 - 0.5)
    p = min(max((voxel + 0.5) / 2 - 0.5, 0.0), h - 1.0)
    lower = math.floor(p)
    upper = min(lower + 1, h - 1)
    w = p - lower
    return (1 - w) * on_level_one(lower) + w * on_level_one(upper)


@pytest.mark.parametrize(("size", "level"), [(37, 1), (37, 2), (37, 3), (37, 5), (8, 1), (8, 3), (3, 1),
                                             (64, 6)])
def test_one_axis_is_the_specs_sentences(size, level):
    rng = np.random.default_rng(size + level)
    grid = rng.integers(-20, 21, math.ceil(size / 2 ** level)).astype(np.float64)
    got = interpolate_box(grid, level, (size,), ((0, size),), "bspline")
    want = [_spec_axis(grid.tolist(), size, level, i) for i in range(size)]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_axes_apply_in_turn_and_constants_stay_constant():
    rng = np.random.default_rng(3)
    shape = (9, 14, 11)
    grid = rng.integers(-9, 10, (3, 4, 3)).astype(np.float32)  # level 2
    got = interpolate_box(grid, 2, shape, tuple((0, s) for s in shape), "bspline")
    want = np.zeros(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                # separable: the weights of each axis multiply; evaluate axis by axis on unit grids
                acc = 0.0
                for a in range(3):
                    for b in range(4):
                        for c in range(3):
                            wa = _spec_axis(list(np.eye(3)[a]), 9, 2, i)
                            wb = _spec_axis(list(np.eye(4)[b]), 14, 2, j)
                            wc = _spec_axis(list(np.eye(3)[c]), 11, 2, k)
                            acc += wa * wb * wc * grid[a, b, c]
                want[i, j, k] = acc
    np.testing.assert_allclose(got, want, atol=1e-4)
    flat = interpolate_box(np.full((3, 4, 3), 7.0, np.float32), 2, shape, tuple((0, s) for s in shape),
                           "bspline")
    np.testing.assert_allclose(flat, 7.0, atol=1e-5)  # the weights sum to one everywhere


def test_bspline_differs_from_linear_and_level_zero_is_the_latent():
    grid = np.array([0.0, 10.0, 0.0, 0.0], np.float32)
    linear = interpolate_box(grid, 1, (8,), ((0, 8),))
    smooth = interpolate_box(grid, 1, (8,), ((0, 8),), "bspline")
    assert not np.allclose(linear, smooth)
    assert smooth.max() < linear.max()  # the B-spline does not pass through the samples
    fine = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(interpolate_box(fine, 0, (8,), ((0, 8),), "bspline"), fine)


@pytest.mark.parametrize("shapes", [[(4, 4, 4), (13, 20, 7)], [(4, 4, 4), (1, 33, 17)], [(5, 5), (24, 10)],
                                    [(3,), (37,)]])
@pytest.mark.parametrize("finest", [0, 1])
def test_gathered_dense_and_numpy_features_agree(shapes, finest):
    latents = PackedLatents(shapes, LAYOUT, finest_level=finest)
    with torch.no_grad():
        latents.flat.copy_(torch.randn(latents.flat.shape, generator=torch.Generator().manual_seed(1)) * 3)
    flat = latents.quantised("hard").detach()
    gathered = latents.features(flat, latents.whole_tile(1))
    dense = latents.dense_features(flat, 1).T
    grids = latents.tile_arrays()[1]
    box = tuple((0, s) for s in shapes[1])
    for level, grid in enumerate(grids):
        want = interpolate_box(np.rint(grid), level, shapes[1], box, "bspline").reshape(-1)
        np.testing.assert_allclose(gathered[:, level].numpy(), want, atol=1e-4)
        np.testing.assert_allclose(dense[:, level].numpy(), want, atol=1e-4)
        part = tuple((s // 3, s // 3 + max(1, s // 2)) for s in shapes[1])  # a box is its part of the whole
        np.testing.assert_allclose(interpolate_box(np.rint(grid), level, shapes[1], part, "bspline"),
                                   want.reshape(shapes[1])[tuple(slice(a, b) for a, b in part)], atol=1e-5)
    assert torch.all(gathered[:, len(grids):] == 0)
    if finest:
        assert torch.all(gathered[:, 0] == 0)


def _trainer(samples: int) -> GridTrainer:
    volume = np.random.default_rng(0).random((16, 20, 12)).astype(np.float32)
    tiles = [(slice(0, 8), slice(0, 20), slice(0, 12)), (slice(8, 16), slice(0, 20), slice(0, 12))]
    trainer = GridTrainer(volume, tiles, LAYOUT, GridConfig(grid_samples=samples, upsampling="bspline",
                                                            finest_level=0), 0, torch.device("cpu"))
    with torch.no_grad():
        trainer.latents.flat.copy_(torch.randn(trainer.latents.numel(), generator=trainer.generator))
    return trainer


def test_the_every_voxel_step_has_the_gathers_loss():
    trainer = _trainer(0)
    loss = trainer._dense_backward("ste", 0.3)
    grad = trainer.latents.flat.grad.clone()
    trainer.optimiser.zero_grad(set_to_none=True)
    flat = trainer.latents.quantised("ste")
    sse = sum(torch.sum((trainer.synthesis(trainer.latents.features(flat, trainer.latents.whole_tile(t)))
                         - trainer.target[int(trainer.latents.tile_start[t]):
                                          int(trainer.latents.tile_start[t + 1])]) ** 2) for t in range(2))
    reference = (sse + 0.3 * trainer.latents.bits(flat)) / trainer.n_voxels
    reference.backward()
    torch.testing.assert_close(loss, reference.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, trainer.latents.flat.grad, rtol=1e-4, atol=1e-6)


def test_bspline_needs_a_context_coded_entropy_model():
    with pytest.raises(SciConfigError, match="B-spline"):
        GridConfig(upsampling="bspline", entropy="factorised")
    with pytest.raises(SciConfigError, match="upsampling must be one of"):
        GridConfig(upsampling="cubic")


def test_the_bspline_gather_compiles_as_one_graph():
    """A graph break inside the gather (numpy in the traced code) compiled every tile's products
    on their own, past dynamo's recompile limit, and the step ran eagerly."""
    latents = PackedLatents([(8, 20, 12), (8, 20, 12), (5, 6, 7)], LAYOUT, finest_level=1)
    sample = latents.sample(500, torch.Generator().manual_seed(0))
    compiled = torch.compile(latents.features_at, fullgraph=True)
    torch.testing.assert_close(compiled(latents.flat, sample.tile, sample.voxel),
                               latents.features_at(latents.flat, sample.tile, sample.voxel))


def test_a_few_voxels_of_a_huge_axis_cost_a_few_voxels():
    """The decoder works per voxel asked for: a dense matrix over a hostile 2^24-voxel axis (legal
    for a 1×1×2^24 tile) would need petabytes."""
    size = 1 << 24
    for level in (1, 2, 6):
        grid = np.ones(math.ceil(size / 2 ** level), np.float32)
        out = interpolate_box(grid, level, (size,), ((size - 3, size),), "bspline")
        np.testing.assert_allclose(out, 1.0, atol=1e-6)


def _smooth_and_blocky(shape=(32, 48, 40)):
    """Smooth blobs (what the B-spline suits) and a volume of sharp steps (CT-like edges)."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    smooth = np.zeros(shape)
    for _ in range(40):
        centre, width = rng.uniform(0, 1, 3) * np.array(shape), rng.uniform(1.5, 3)
        smooth += rng.uniform(-1, 1) * np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2
                                                + (x - centre[2]) ** 2) / (2 * width ** 2))
    blocky = np.floor(x / 6) + 2 * np.floor(y / 9) + np.floor(z / 5)
    return smooth / np.abs(smooth).max(), blocky / blocky.max()


def test_auto_upsampling_picks_the_bspline_where_it_fits_the_volume_better():
    """``choose_upsampling``: the least-squares half-resolution B-spline beats trilinear interpolation
    on smooth structure by more than ``BSPLINE_GAIN_DB``, not on sharp steps."""
    from napari_sci.models.grid_fit import BSPLINE_GAIN_DB, bspline_gain, choose_upsampling

    smooth, blocky = _smooth_and_blocky()
    assert bspline_gain(smooth) > BSPLINE_GAIN_DB
    assert bspline_gain(blocky) < BSPLINE_GAIN_DB
    assert (choose_upsampling(smooth), choose_upsampling(blocky)) == ("bspline", "linear")
    assert choose_upsampling(smooth[5]) == "bspline"  # 2-D as well


def test_auto_upsampling_sets_the_files_model():
    """The encoder resolves ``auto`` from the volume; the file's model id follows (5: B-spline, 3:
    linear); with the factorised model it is linear (model 2)."""
    import napari_sci
    from napari_sci.io.format import MODEL_GRID, MODEL_GRID_CONTEXT, MODEL_GRID_CONTEXT_BSPLINE

    smooth, blocky = _smooth_and_blocky()
    models = []
    for volume, entropy in ((smooth, "context"), (blocky, "context"), (smooth, "factorised")):
        values = np.round(100 + 100 * volume).astype(np.uint8)
        result = napari_sci.compress(values, bpv=0.5, steps=3, device="cpu", entropy=entropy, residual="none")
        models.append(result.contents.header.model)
    assert models == [MODEL_GRID_CONTEXT_BSPLINE, MODEL_GRID_CONTEXT, MODEL_GRID]
