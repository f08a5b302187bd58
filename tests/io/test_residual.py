"""Format 3's residual layer (models 7 to 12): the coefficient coding, its contexts against the spec's
sentences, the encoder's use of the budget and the reader's refusals."""

import itertools
import math

import numpy as np
import pytest

from napari_sci.errors import SciFormatError, SciInputError
from napari_sci.io import residual as R
from napari_sci.models import residual_blocks as B


def _level1(shape, rng, density=0.3):
    half = tuple(-(-s // 2) for s in shape)
    return (rng.integers(-5, 6, size=half) * (rng.random(half) < density)).astype(np.int64)


@pytest.mark.parametrize(("coding", "block"), [(1, None), (2, None), (3, (8, 8, 8)), (3, (4, 16, 16)),
                                               (3, (16, 2, 32)), (3, (2, 16, 16))])
@pytest.mark.parametrize("shape", [(19, 24, 13), (8, 8, 8), (3, 5, 17), (1, 1, 9), (2, 2, 2)])
def test_coefficients_round_trip_through_the_stream(shape, coding, block):
    rng = np.random.default_rng(sum(shape))
    level1 = _level1(shape, rng)
    residual = rng.normal(size=shape) * 0.01 * (rng.random(shape) < 0.2)
    residual.flat[-1] = 0.05  # never all zero
    layout = R.tile_layout(shape, level1, block)
    q = R.quantise(B.transform(residual, block), 0.002)
    assert q.size == math.prod(shape)
    model = R.best_codes([(layout, q)], 0.002, coding)
    assert len(model.pack()) == R.SECTION_BYTES[coding]
    stream = R.encode(layout, q, model)
    unpacked = R.ResidualModel.unpack(model.pack(), coding)
    assert unpacked.block == (block or (8, 8, 8))  # coding 3 states it, codings 1 and 2 are 8³
    decoded = R.decode(stream, R.tile_layout(shape, level1, unpacked.block), unpacked)
    assert np.array_equal(decoded, q)
    # the correction removes most of the residual at this step
    corrected = residual - B.reconstruct(layout, decoded, model.step)
    assert np.sqrt(np.mean(corrected ** 2)) < 0.5 * np.sqrt(np.mean(residual ** 2))


def test_an_all_zero_residual_costs_no_stream():
    shape = (16, 16, 16)
    layout = R.tile_layout(shape, None)
    q = R.quantise(B.transform(np.zeros(shape)), 0.01)
    model = R.best_codes([(layout, q)], 0.01)
    assert model.flag_codes == (0,) * R.BINS
    assert model.class_codes == (0,) * R.CODING_CLASSES[R.WRITTEN_CODING]
    assert model.band_codes == (0,) * R.BAND_CONTEXTS
    assert R.encode(layout, q, model) == b""
    assert not R.decode(b"", layout, model).any()


def test_each_class_gets_the_scale_code_with_the_fewest_bits_of_all():
    """A sparse class (a few ±1 and one ±3 among thousands of zeros) has a tiny mean |q|, but its best
    scale is far above the mean's code: the search must cover every code, not a window (session 26's
    window cost 9 % of the MRI's residual bits)."""
    shape = (32, 32, 32)
    layout = R.tile_layout(shape, None)
    rng = np.random.default_rng(3)
    q = np.zeros(layout.classes.size, np.int32)
    q[layout.starts[:-1]] = rng.integers(20, 40, size=layout.count)  # every block coded (DC)
    sparse = np.flatnonzero(layout.classes == 9)
    q[rng.choice(sparse, 6, replace=False)] = [1, -1, 1, -1, 1, 3]
    model = R.best_codes([(layout, q)], 0.01, coding=1)
    members = q[(layout.classes == 9)]
    exact = [R.laplace_bits_each(members, R.SCALES[k]).sum() for k in range(1, 256)]
    assert model.class_codes[9] == 1 + int(np.argmin(exact))
    assert exact[model.class_codes[9] - 1] < 0.95 * exact[24]  # the old window's edge (code 25)
    assert np.array_equal(R.decode(R.encode(layout, q, model), layout, model), q)


def test_coding_2_neighbourhoods_follow_the_spec_sentence():
    """f = min(3, Σ |q(k − e_a)|) over the axes with k_a ≥ 1 whose neighbour lies in a lower band."""
    shape = (8, 5, 3)
    layout = R.tile_layout(shape, None)
    rng = np.random.default_rng(5)
    q = rng.integers(-2, 3, size=layout.classes.size).astype(np.int32)
    members = np.arange(q.size)
    got = R._neighbourhood(layout, q, members)
    band = R.band_of(shape)
    block = q.reshape(shape)  # one block: coding order is C order
    for position, k in enumerate(itertools.product(*(range(m) for m in shape))):
        total = 0
        for axis in range(3):
            if k[axis] >= 1:
                below = tuple(v - (a == axis) for a, v in enumerate(k))
                if band[below] < band[k]:
                    total += abs(int(block[below]))
        assert got[position] == min(3, total), k


@pytest.mark.parametrize("block", [(8, 8, 8), (4, 16, 16), (16, 2, 32)])
def test_a_bands_classes_gathered_per_block_shape_match_the_per_coefficient_tables(block):
    """The decoder gathers a band's coefficients and classes a block shape at a time from the lower
    bands alone; they must be the coefficients and classes the per-coefficient tables give (the
    encoder's) — on a tile whose cut blocks have every shape."""
    shape = (19, 21, 37)
    rng = np.random.default_rng(7)
    layout = R.tile_layout(shape, _level1(shape, rng, 0.5), block)
    q = (rng.integers(-3, 4, size=layout.size) * (rng.random(layout.size) < 0.4)).astype(np.int32)
    assert len(layout.shapes) == 8
    for band in range(R.BANDS):
        blocks = np.flatnonzero(rng.random(layout.count) < 0.6)
        lower_bands = np.where(layout.bands < band, np.abs(q), 0)  # what a decoder holds by then
        members, classes = layout.band_classes(band, blocks, lower_bands)
        expected = np.flatnonzero((layout.bands == band) & np.isin(layout.block_of, blocks))
        assert np.array_equal(members, expected)
        assert np.array_equal(classes, R._coefficient_class(layout, q, expected))


def test_coding_2_is_smaller_than_coding_1_on_a_smooth_residual():
    """Band flags and neighbourhood classes (models 9 and 10) spend fewer bytes than coding every
    coefficient of a coded block (models 7 and 8): the zeros of high bands cost nothing once their band
    is flagged empty (the MRI's 0.25-BPV file: −7 %)."""
    from scipy.ndimage import gaussian_filter

    shape = (32, 32, 32)
    rng = np.random.default_rng(1)
    smooth = gaussian_filter(rng.normal(size=shape), 1.0)
    q = R.quantise(B.transform(0.05 * smooth / np.abs(smooth).max()), 0.004)
    layout = R.tile_layout(shape, None)
    sizes = {}
    for coding in (1, 2):
        model = R.best_codes([(layout, q)], 0.004, coding)
        stream = R.encode(layout, q, model)
        assert np.array_equal(R.decode(stream, layout, model), q)
        sizes[coding] = len(stream)
    assert sizes[2] < 0.99 * sizes[1], sizes


def test_activity_bins_follow_the_spec_sentence():
    """A = Σ|q| over level-1 samples j with ⌊j_a/4⌋ = B_a; bin = how many of (1, 4, 16, 64, 256) A reaches."""
    rng = np.random.default_rng(3)
    shape = (21, 9, 30)
    level1 = _level1(shape, rng, 0.6) * 20
    bins = R.activity_bins(shape, level1)
    for block in itertools.product(*(range(math.ceil(s / 8)) for s in shape)):
        total = sum(abs(int(level1[j])) for j in itertools.product(*(range(n) for n in level1.shape))
                    if all(j[a] // 4 == block[a] for a in range(3)))
        assert bins[block] == sum(total >= t for t in (1, 4, 16, 64, 256))
    assert not R.activity_bins(shape, None).any()


@pytest.mark.parametrize("block", [(4, 16, 16), (2, 8, 32), (16, 16, 16)])
def test_activity_bins_of_a_block_shape_follow_the_spec_sentence(block):
    """Models 11 and 12: A = Σ|q| over level-1 samples j with ⌊2·j_a/m_a⌋ = B_a; bin = how many t of
    (1, 4, 16, 64, 256) give 512·A ≥ t·m₀m₁m₂."""
    rng = np.random.default_rng(4)
    shape = (21, 9, 30)
    level1 = _level1(shape, rng, 0.05)
    level1 = level1 * (1 + 40 * (np.arange(level1.shape[2]) > level1.shape[2] // 2))  # quiet and busy
    bins = R.activity_bins(shape, level1, block)
    assert bins.shape == tuple(math.ceil(s / m) for s, m in zip(shape, block))
    volume = math.prod(block)
    for index in itertools.product(*(range(n) for n in bins.shape)):
        total = sum(abs(int(level1[j])) for j in itertools.product(*(range(n) for n in level1.shape))
                    if all(2 * j[a] // block[a] == index[a] for a in range(3)))
        assert bins[index] == sum(512 * total >= t * volume for t in (1, 4, 16, 64, 256))
    assert len(set(bins.reshape(-1).tolist())) > 2  # the test sees several bins


@pytest.mark.parametrize("log2", [(0, 3, 3), (3, 6, 3), (5, 5, 3), (4, 4, 5), (3, 3, 255), (1, 1, 1),
                                  (2, 3, 3)])
def test_a_block_shape_out_of_range_is_refused(log2):
    model = R.ResidualModel.empty(3)
    data = bytearray(model.pack())
    data[4:7] = bytes(log2)
    with pytest.raises(SciFormatError, match="block shape"):
        R.ResidualModel.unpack(bytes(data), 3)


def test_the_block_shape_sits_after_the_step_as_log2_bytes():
    """docs/format.md "Models 11 and 12": residual_step f32, then log2 m_a for axes 0, 1, 2."""
    import struct

    model = R.ResidualModel.empty(3, (4, 32, 16))
    data = model.pack()
    assert struct.unpack_from("<f", data, 0)[0] == 1.0
    assert data[4:7] == bytes([2, 5, 4])
    assert R.ResidualModel.unpack(data, 3).block == (4, 32, 16)


def test_bands_follow_the_spec_formula():
    for shape in [(8, 8, 8), (3, 8, 5)]:
        band = R.band_of(shape)
        for k in itertools.product(*(range(m) for m in shape)):
            assert band[k] == min(sum(8 * k[a] // shape[a] for a in range(3)), 11)


def test_the_section_refuses_a_step_out_of_range():
    good = R.ResidualModel(0.01, (0,) * R.BINS, (0,) * R.CLASSES).pack()
    for step in (0.0, 2.0, float("nan")):
        bad = R.ResidualModel(step, (0,) * R.BINS, (0,) * R.CLASSES).pack()
        with pytest.raises(SciFormatError, match="residual step"):
            R.ResidualModel.unpack(bad)
    with pytest.raises(SciFormatError, match="residual model of"):
        R.ResidualModel.unpack(good[:-1])


def test_a_latent_length_past_the_payload_is_refused():
    payload = R.join_payload(b"\x01\x02", b"\x00" * 8)
    assert R.split_payload(payload) == (b"\x01\x02", b"\x00" * 8)
    with pytest.raises(SciFormatError, match="runs past"):
        R.split_payload(b"\xff\x00\x00\x00" + b"\x00" * 8)
    with pytest.raises(SciFormatError, match="no latent length"):
        R.split_payload(b"\x01")


@pytest.mark.parametrize("coding", [1, 2])
def test_a_garbled_stream_is_a_format_error_not_a_crash(coding):
    shape = (16, 16, 16)
    rng = np.random.default_rng(5)
    layout = R.tile_layout(shape, None)
    q = R.quantise(B.transform(rng.normal(size=shape) * 0.02), 0.002)
    model = R.best_codes([(layout, q)], 0.002, coding)
    stream = R.encode(layout, q, model)
    with pytest.raises(SciFormatError):
        R.decode(stream[:-3], layout, model)


@pytest.fixture(scope="module")
def textured():
    """A 3-D volume with fine texture on smooth structure: what the latents alone blur."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in (32, 64, 64)), indexing="ij")
    smooth = 100 + 80 * np.sin(3 * x + 2 * y) * np.cos(2 * z)
    texture = 30 * np.sign(np.sin(40 * x) * np.sin(37 * y))
    return np.clip(smooth + texture + rng.normal(0, 2, x.shape), 0, 255).astype(np.uint8)


def test_the_residual_layer_fills_the_budget_and_lifts_quality(textured, tmp_path):
    import napari_sci
    from napari_sci.io.container import read_sci
    from napari_sci.io.format import MODEL_GRID_CONTEXT_FILTERED

    bpv = 0.5
    settings = dict(steps=30, seed=1, device="cpu", residual_grid_bpv=0.15)
    plain = napari_sci.compress(textured, bpv=bpv, residual="none", out=tmp_path / "plain.sci", **settings)
    layered = napari_sci.compress(textured, bpv=bpv, residual="dct", out=tmp_path / "layer.sci", **settings)
    target = bpv * textured.size / 8
    size = (tmp_path / "layer.sci").stat().st_size
    assert 0.97 * target <= size <= target
    contents = read_sci(tmp_path / "layer.sci")
    assert contents.header.model == MODEL_GRID_CONTEXT_FILTERED  # auto upsampling: linear for this volume

    def psnr(path):
        decoded = np.asarray(napari_sci.decode(path)).astype(float)
        return 10 * np.log10(255 ** 2 / np.mean((decoded - textured) ** 2))

    assert psnr(tmp_path / "layer.sci") > psnr(tmp_path / "plain.sci") + 1.0
    # lazy decoding of a region equals the same region of the whole volume
    whole = np.asarray(napari_sci.decode(tmp_path / "layer.sci"))
    roi = np.s_[5:20, 10:50, 33:64]
    assert np.array_equal(np.asarray(napari_sci.decode(tmp_path / "layer.sci", roi=roi)), whole[roi])
    assert plain.contents.header.model != layered.contents.header.model


def test_auto_adds_the_layer_to_3d_volumes_above_the_latents_share(textured, tmp_path):
    """``residual="auto"`` (the default): a residual layer on a 3-D volume from 0.04 BPV (from 0.02
    beside B-spline latents), none below it nor on a 2-D image; the latents get at most
    ``latent_share`` of the budget."""
    import napari_sci
    from napari_sci.base.config import Budget, CompressConfig, GridConfig
    from napari_sci.core.grid_encode import resolve_residual
    from napari_sci.io.format import MODEL_GRID_CONTEXT, MODEL_GRID_CONTEXT_FILTERED

    settings = dict(steps=5, seed=1, device="cpu")
    high = napari_sci.compress(textured, bpv=0.3, **settings)
    middle = napari_sci.compress(textured, bpv=0.1, **settings)
    assert high.contents.header.model == MODEL_GRID_CONTEXT_FILTERED
    assert middle.contents.header.model == MODEL_GRID_CONTEXT_FILTERED
    latent_bytes = sum(len(R.split_payload(p)[0]) for p, kind in zip(
        middle.contents.payloads, middle.contents.header.blocks["kind"]) if kind == 3)
    assert 0 < latent_bytes <= 0.75 * middle.target_bytes
    for voxels in (200 ** 3, 16 * 256 * 256):  # 0.02 BPV of the second: 2,621.44 bytes, rounded down
        for upsampling, bpv, wanted in (("bspline", 0.015, "none"), ("bspline", 0.02, "dct"),
                                        ("linear", 0.02, "none"), ("linear", 0.04, "dct"),
                                        ("linear", 0.05, "dct")):
            config = CompressConfig(Budget(bpv=bpv), grid=GridConfig(upsampling=upsampling))
            target = config.budget.target_bytes(voxels, 2)
            assert resolve_residual(config, 3, target, voxels).grid.residual == wanted, (voxels, bpv)
    image = napari_sci.compress(textured[10], bpv=1.0, **settings)
    assert image.contents.header.model == MODEL_GRID_CONTEXT


def test_auto_leaves_out_a_layer_the_budget_cannot_hold(textured):
    """A small volume at a low rate: the residual's model (~450 bytes) and its least share do not fit
    beside the smallest latents, so ``auto`` writes the latents alone, within the budget (the layer
    once made such a file 710 bytes for a 655-byte target)."""
    import napari_sci
    from napari_sci.io.format import MODEL_GRID_CONTEXT

    for bpv in (0.03, 0.04, 0.06):
        result = napari_sci.compress(textured, bpv=bpv, steps=5, seed=1, device="cpu")
        assert result.contents.file_size <= result.target_bytes, bpv
        assert result.contents.header.model == MODEL_GRID_CONTEXT


def test_the_residual_layer_is_for_3d_volumes_only(tmp_path):
    import napari_sci

    image = (np.add.outer(np.arange(256), np.arange(256)) % 251).astype(np.uint8)
    with pytest.raises(SciInputError, match="3-D"):
        napari_sci.compress(image, bpv=0.5, residual="dct", steps=5)


def test_the_residual_layer_needs_the_context_entropy_model():
    from napari_sci.base.config import GridConfig
    from napari_sci.errors import SciConfigError

    with pytest.raises((SciConfigError, ValueError), match="context entropy"):
        GridConfig(residual="dct", entropy="factorised")


def test_strided_reading_adds_the_residual_like_a_box_read(textured):
    """Multiscale reading evaluates only picked voxels (``evaluate_at``): with a residual layer it must
    add the same residual as a box read (``evaluate``)."""
    import napari_sci
    from napari_sci.core.decoder import VolumeDecoder, decode_contents
    from napari_sci.store.multiscale import sample_decoder

    result = napari_sci.compress(textured, bpv=0.5, residual="dct", steps=5, seed=1, device="cpu")
    decoder = VolumeDecoder(result.contents)
    picks = [np.arange(1, s, 3) for s in textured.shape]
    sampled = sample_decoder(decoder, picks)
    whole = decode_contents(result.contents, deblocking=False)
    expected = whole[np.ix_(*picks)].astype(float)
    low, high = float(textured.min()), float(textured.max())  # the decoder clips to the data range
    assert np.abs(np.rint(np.clip(sampled, low, high)) - expected).max() <= 1


def test_the_latents_share_beside_the_residual_follows_the_upsampling():
    """Left None, ``residual_grid_bpv`` is 0.02 BPV with the B-spline (its residual codes cheaply) and
    0.1 with linear upsampling; a value given wins; ``auto`` upsampling must be resolved first."""
    from napari_sci.base.config import BSPLINE_LATENT_BPV, LINEAR_LATENT_BPV, GridConfig
    from napari_sci.errors import SciConfigError

    assert GridConfig(upsampling="bspline").residual_grid_bpv_used == BSPLINE_LATENT_BPV
    assert GridConfig(upsampling="linear").residual_grid_bpv_used == LINEAR_LATENT_BPV
    assert BSPLINE_LATENT_BPV < LINEAR_LATENT_BPV
    assert GridConfig(upsampling="bspline", residual_grid_bpv=0.2).residual_grid_bpv_used == 0.2
    with pytest.raises((SciConfigError, ValueError), match="auto"):
        _ = GridConfig(upsampling="auto").residual_grid_bpv_used
    with pytest.raises((SciConfigError, ValueError), match="residual_grid_bpv"):
        GridConfig(residual_grid_bpv=0.0)


def test_bspline_latents_get_the_smaller_share():
    """The latents' budget beside a residual layer: 0.02 BPV with the B-spline, 0.1 linear, at most ¾
    of the file, and never the residual layer's last 0.01 BPV, its model and streams (which binds
    below 0.04 BPV)."""
    from napari_sci.base.config import Budget, CompressConfig, GridConfig
    from napari_sci.core.grid_encode import latent_budget
    from napari_sci.io.residual import SECTION_BYTES

    voxels = 200 ** 3
    for upsampling, cap in (("bspline", 0.02), ("linear", 0.1)):
        config = CompressConfig(Budget(bpv=0.1), grid=GridConfig(upsampling=upsampling, residual="dct"))
        for bpv in (0.05, 0.1, 0.25):
            target = int(bpv * voxels / 8)
            assert latent_budget(config, 3, target, voxels) == int(min(cap * voxels / 8, 0.75 * target))
        for bpv, latents in ((0.02, 0.01), (0.03, 0.02)):  # the latents' bytes count the residual's model
            target = int(bpv * voxels / 8)
            expected = min(cap * voxels / 8, 0.75 * target, latents * voxels / 8 + SECTION_BYTES[3])
            assert latent_budget(config, 3, target, voxels) == int(expected)
            assert expected < 0.75 * target


@pytest.mark.parametrize("block", [(8, 8), (3, 8, 8), (1, 8, 8), (64, 8, 8), (32, 32, 8), (16, 16, 32),
                                   (2, 2, 2), (4, 4, 8)])
def test_a_residual_block_the_format_cannot_state_is_a_config_error(block):
    from napari_sci.base.config import GridConfig
    from napari_sci.errors import SciConfigError

    with pytest.raises((SciConfigError, ValueError), match="residual_block"):
        GridConfig(residual_block=block)
    assert GridConfig(residual_block=(2, 32, 32)).residual_block == (2, 32, 32)  # 4,096 voxels: allowed


def test_the_command_line_takes_a_residual_block_shape():
    from napari_sci.cli import build_parser

    base = ["compress", "in.tif", "-o", "out.sci", "--bpv", "0.1"]
    assert build_parser().parse_args([*base, "--residual-block", "4x16x16"]).residual_block == (4, 16, 16)
    assert build_parser().parse_args(base).residual_block is None
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--residual-block", "4x16"])
