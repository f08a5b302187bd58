"""The INR codecs through the core: ``siren`` is the core with one block and fr 1, within budget;
``sci`` stays the paper's SIREN model whatever the core's default; ``grid`` is the latent-grid model."""

import numpy as np

from napari_sci.bench.ablation import AblationSettings, Variant, markdown_table, run_ablation
from napari_sci.bench.codecs import Target, make_codec
from napari_sci.bench.settings import BenchSettings
from napari_sci.io.container import parse
from napari_sci.io.format import GRID_MODELS

SETTINGS = BenchSettings(steps=3, device="cpu", samples=256)


def test_siren_is_the_core_with_one_plain_network(lsm64):
    volume = lsm64[:8, :32, :32].copy()
    codec = make_codec("siren", SETTINGS)
    target = Target(1.0, volume.size)
    packed = codec.compress(volume, target)
    assert len(packed.blob) <= target.bytes
    header = parse(packed.blob).header
    assert header.partition == "none"
    assert header.fr == 1.0
    assert len(header.blocks) == 1
    assert header.steps == 3
    decoded = codec.decompress(packed.blob)
    assert decoded.shape == volume.shape
    assert decoded.dtype == volume.dtype


def test_sci_is_the_papers_siren_model_and_grid_the_latent_grids(mri64):
    volume = np.ascontiguousarray(mri64[:, :, :]).repeat(2, axis=0)  # 32×64×64: one 32k-voxel tile
    target = Target(0.5, volume.size)
    headers = {}
    for name in ("sci", "grid"):
        codec = make_codec(name, SETTINGS)
        packed = codec.compress(volume, target)
        assert len(packed.blob) <= target.bytes
        headers[name] = parse(packed.blob).header
        decoded = codec.decompress(packed.blob)
        assert decoded.shape == volume.shape
        assert decoded.dtype == volume.dtype
    assert headers["sci"].version == 2
    assert headers["sci"].model not in GRID_MODELS
    assert headers["grid"].version == 3
    assert headers["grid"].model in GRID_MODELS


def test_ablation_runs_the_papers_siren_model(mri64, monkeypatch):
    import napari_sci.core.codec as codec_module  # the ablation imports encode from here per call

    seen = []
    real_encode = codec_module.encode

    def watching(volume, config, *args, **kwargs):
        seen.append(config.model)
        return real_encode(volume, config, *args, **kwargs)

    monkeypatch.setattr(codec_module, "encode", watching)
    run_ablation(mri64[:8, :32, :32].copy(), AblationSettings(bpv=1.0, steps=2, device="cpu"),
                 (Variant("partition", "none", {"method": "none"}),))
    assert seen == ["siren"]


def test_ablation_encodes_identical_settings_once(mri64, monkeypatch):
    from napari_sci.bench import ablation

    volume = mri64[:8, :32, :32].copy()
    real, calls = ablation._encode, []

    def counting(*args):
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(ablation, "_encode", counting)
    variants = (Variant("partition", "none", {"method": "none"}),
                Variant("funnel ratio", "fr = 1.0 (none)", {"method": "none", "fr": 1.0}),
                Variant("allocation", "none again", {"method": "none", "rule": "size-over-d"}))
    rows = run_ablation(volume, AblationSettings(bpv=1.0, steps=2, device="cpu"), variants)
    assert len(calls) == 2
    assert rows[0].psnr_data == rows[2].psnr_data
    assert np.isfinite(rows[1].psnr_data)
    assert all(r.bytes <= volume.size // 8 for r in rows)
    table = markdown_table(rows, "smoke")
    assert table.count("\n| ") == 3 + 1
    assert "fr = 1.0 (none)" in table
