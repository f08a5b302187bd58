"""End-to-end encode/decode on crops of the real volumes."""

import math

import numpy as np
import pytest

from napari_sci.base.config import compress_config
from napari_sci.core.codec import encode, smallest_file_bytes
from napari_sci.core.decoder import decode_block, decode_contents
from napari_sci.core.metrics import psnr
from napari_sci.errors import SciBudgetError, SciCancelledError


def config(**kw):
    defaults = {"bpv": 1.0, "steps": 800, "samples_per_block": 2048, "device": "cpu"}
    defaults.update(kw)
    return compress_config(**defaults)


@pytest.mark.parametrize(("name", "margin"), [("mri", 6), ("ct", 6), ("lsm", 1)])
def test_round_trip_beats_the_mean_by_a_margin(name, margin, request):
    """Decoded PSNR clears that of the volume's mean value (the light-sheet crop is mostly noise)."""
    volume = request.getfixturevalue(name)
    result = encode(volume, config())
    decoded = decode_contents(result.contents)
    assert decoded.dtype == volume.dtype
    assert decoded.shape == volume.shape
    assert decoded.min() >= volume.min()
    assert decoded.max() <= volume.max()
    span = float(np.ptp(volume))
    mean_psnr = psnr(volume, np.full(volume.shape, volume.mean()), span)
    assert result.metrics.psnr_data > mean_psnr + margin, (result.metrics.psnr_data, mean_psnr)
    assert result.metrics.psnr_data == pytest.approx(psnr(volume, decoded, span))
    assert result.contents.header.psnr == pytest.approx(result.metrics.psnr_data, abs=1e-4)
    assert result.n_bytes <= result.target_bytes


def test_sparse_volume_uses_constant_blocks(neuron):
    result = encode(neuron, config(bpv=2.0, steps=100, max_depth=2, useful_hidden=4, model="siren"))
    kinds = result.contents.header.blocks["kind"]
    assert (kinds == 0).any()
    assert (kinds == 1).any()
    decoded = decode_contents(result.contents)
    zero_blocks = [b for b, k in zip(result.partition.blocks, kinds) if k == 0 and not neuron[b.slices].any()]
    for block in zero_blocks:
        assert not decoded[block.slices].any()


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("shape", [(32, 32, 32), (40, 64, 48), (64, 64, 64)])
@pytest.mark.parametrize("bpv", [0.05, 0.1, 0.5, 1.0, 2.0])
def test_file_size_is_within_97_percent_of_the_target(shape, bpv, version):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 4000, size=shape).astype(np.uint16)
    cfg = config(bpv=bpv, steps=0, format=version, model="siren")
    target = cfg.budget.target_bytes(volume.size, 2)
    if target < smallest_file_bytes(3, cfg):
        with pytest.raises(SciBudgetError, match="smallest achievable"):
            encode(volume, cfg)
        return
    result = encode(volume, cfg)
    assert 0.97 * target <= result.n_bytes <= target, (result.n_bytes, target)
    assert len(result.data) == result.n_bytes


def test_ratio_target(mri):
    result = encode(mri, config(bpv=None, ratio=40, steps=0))
    assert mri.nbytes / 40 * 0.97 <= result.n_bytes <= mri.nbytes / 40


def test_constant_and_zero_volumes_decode_exactly():
    for value in (0, 77):
        volume = np.full((20, 30, 10), value, dtype=np.uint8)
        result = encode(volume, config(bpv=0.5))
        assert result.n_bytes < 200
        np.testing.assert_array_equal(decode_contents(result.contents), volume)
        assert math.isinf(result.metrics.psnr_data)


def test_too_small_budget_names_the_smallest_achievable(mri):
    with pytest.raises(SciBudgetError, match=r"smallest achievable file is \d+ bytes"):
        encode(mri, config(bpv=0.001))


def test_budget_above_raw_size_is_refused(mri):
    with pytest.raises(SciBudgetError, match="not smaller than the raw"):
        encode(mri, config(bpv=8.0))


def test_cancel_raises_and_returns_nothing(mri):
    with pytest.raises(SciCancelledError, match="nothing written"):
        encode(mri, config(steps=10_000), stop=lambda: True)


@pytest.mark.parametrize("stage", ["quantise", "evaluate"])
def test_cancel_is_honoured_after_fitting_too(mri, stage):
    """A Cancel pressed while the weights are quantised and coded, or before the final decode, stops
    there rather than running to the end."""
    import threading

    from napari_sci.core.codec import encode_events
    from napari_sci.core.events import StageStarted

    stop = threading.Event()
    seen = []

    def run_until_cancelled() -> None:
        for event in encode_events(mri, config(bpv=0.5, steps=20), stop=stop):
            if isinstance(event, StageStarted):
                seen.append(event.stage)
                if event.stage == stage:
                    stop.set()

    with pytest.raises(SciCancelledError, match="nothing written"):
        run_until_cancelled()
    assert seen[-1] == stage


def test_2d_images_round_trip(sample):
    image = sample[32]
    result = encode(image, config(bpv=2.0, steps=200))
    decoded = decode_contents(result.contents)
    assert decoded.shape == image.shape
    mean_psnr = psnr(image, np.full(image.shape, image.mean()), float(np.ptp(image)))
    assert result.metrics.psnr_data > mean_psnr + 5


def test_decode_block_is_the_raw_network(mri):
    result = encode(mri, config(steps=50, max_depth=1, min_leaf_side=4))
    block = result.partition.blocks[0]
    raw = decode_block(result.contents, 0)
    assert raw.shape == block.size
    assert raw.dtype == np.float32
    undeblocked = decode_contents(result.contents, deblocking=False)
    np.testing.assert_array_equal(undeblocked[block.slices], np.clip(np.rint(raw), mri.min(), mri.max()))


@pytest.mark.parametrize("version", [1, 2])
def test_encode_serialises_once_and_its_contents_are_what_a_reader_gets(mri, monkeypatch, version):
    """The PSNR is measured on in-memory contents, so they must equal the parsed file, field by field."""
    from napari_sci.core import codec
    from napari_sci.io.container import parse

    calls = []
    serialise = codec.serialise
    monkeypatch.setattr(codec, "serialise", lambda *a: calls.append(1) or serialise(*a))
    volume = np.ascontiguousarray(mri[:16, :20, :24])
    result = encode(volume, config(steps=20, w0=30.1, format_version=version), spacing=(0.7, 1.1, 2.3))
    assert len(calls) == 1
    parsed = parse(result.data)
    for name, stored in vars(parsed.header).items():
        ours = getattr(result.contents.header, name)
        if isinstance(stored, np.ndarray):
            np.testing.assert_array_equal(ours, stored)
        else:
            assert ours == stored, name
    assert result.contents.payloads == parsed.payloads
    np.testing.assert_array_equal(decode_contents(parsed), decode_contents(result.contents))
