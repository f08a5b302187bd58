"""The command line, run in-process through ``main(argv)``."""

import io
import json

import numpy as np
import pytest
import tifffile

from napari_sci.cli import main


def run(argv):
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def volume_tif(tmp_path_factory, mri):
    path = tmp_path_factory.mktemp("cli") / "mri.tif"
    tifffile.imwrite(path, mri, imagej=True, resolution=(1 / 0.8, 1 / 0.8),
                     metadata={"spacing": 1.5, "axes": "ZYX"})
    return path


@pytest.fixture(scope="module")
def sci_file(volume_tif):
    out = volume_tif.with_name("mri.sci")
    code, text = run(["compress", str(volume_tif), "-o", str(out), "--bpv", "1", "--steps", "100", "-q",
                      "--json"])
    assert code == 0
    return out, json.loads(text)


def test_compress_summary(sci_file, volume_tif):
    path, summary = sci_file
    assert path.stat().st_size == summary["bytes"] <= summary["target_bytes"]
    assert summary["bpv"] == pytest.approx(8 * summary["bytes"] / (32 * 40 * 36))
    assert summary["psnr_data"] > 20
    assert 0 < summary["ssim"] <= 1
    assert tifffile.imread(volume_tif).shape == (32, 40, 36)  # input untouched


def test_compress_text_summary(volume_tif, tmp_path):
    code, text = run(["compress", str(volume_tif), "-o", str(tmp_path / "x.sci"), "--ratio", "20",
                      "--steps", "20", "-q", "--partition", "none", "--fr", "1", "--model", "siren"])
    assert code == 0
    for word in ("blocks", "parameters", "bytes", "BPV", "ratio", "PSNR", "SSIM", "time"):
        assert word in text


def test_the_default_model_is_the_latent_grids_and_its_summary_counts_tiles(volume_tif, tmp_path):
    out = tmp_path / "default.sci"
    code, text = run(["compress", str(volume_tif), "-o", str(out), "--bpv", "1", "--steps", "20", "-q"])
    assert code == 0
    assert "tiles      1 (1 grid; latent-grid model, format 3)" in text
    code, text = run(["info", str(out), "--json"])
    assert json.loads(text)["model"]["family"] == "grid"


@pytest.mark.parametrize(("extra", "named"), [
    (["--fr", "1"], "--fr set the siren model"),
    (["--form", "1", "--bits-per-param=5"], "--format, --bits-per-param set the siren model"),
    (["--model", "siren", "--entropy", "predictive"], "--entropy set the grid model"),
    (["--model", "siren", "--no-exact-tiles"], "--no-exact-tiles set the grid model"),
])
def test_an_option_of_the_other_model_is_refused_not_ignored(volume_tif, tmp_path, capsys, extra, named):
    code, _ = run(["compress", str(volume_tif), "-o", str(tmp_path / "x.sci"), "--bpv", "1", *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert named in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.sci").exists()


def test_info(sci_file):
    path, summary = sci_file
    code, text = run(["info", str(path), "--json"])
    info = json.loads(text)
    assert code == 0
    assert info["bytes"] == summary["bytes"]
    assert info["shape"] == [32, 40, 36]
    assert info["spacing"] == pytest.approx([1.5, 0.8, 0.8])
    assert len(info["block_table"]) == info["blocks"]
    # every byte accounted for: header (model section inside it) plus each block's payload
    assert info["header_bytes"] + sum(b["bytes"] for b in info["block_table"]) == info["bytes"]
    assert 0 <= info["section_bytes"] < info["header_bytes"]
    code, text = run(["info", str(path)])
    assert code == 0
    assert "blocks" in text
    assert f"header {info['header_bytes']} bytes" in text
    assert text.count(" bytes\n") >= info["blocks"]  # each block's line ends with its bytes


def test_info_names_every_block_kind_of_a_lossless_grid_file(neuron, tmp_path):
    """A sparse volume whose tiles all fit losslessly: ``compress`` says so (max error 0) and ``info``
    lists its exact tiles (kind 4 once made ``info`` fail)."""
    source = tmp_path / "neuron.tif"
    tifffile.imwrite(source, neuron)
    out = tmp_path / "neuron.sci"
    code, text = run(["compress", str(source), "-o", str(out), "--bpv", "1", "--model", "grid",
                      "--json", "-q"])
    assert code == 0
    assert json.loads(text)["max_abs_error"] == 0
    code, text = run(["info", str(out), "--json"])
    assert code == 0
    assert "exact" in {block["kind"] for block in json.loads(text)["block_table"]}


@pytest.mark.parametrize(("golden", "entropy", "upsampling", "residual"), [
    ("golden_v3.sci", "factorised", "linear", "none"), ("golden_v3_context.sci", "context", "linear", "none"),
    ("golden_v3_predictive.sci", "predictive", "linear", "none"),
    ("golden_v3_context_bspline.sci", "context", "bspline", "none"),
    ("golden_v3_predictive_bspline.sci", "predictive", "bspline", "none"),
    ("golden_v3_context_residual.sci", "context", "linear", "dct"),
    ("golden_v3_context_bspline_residual.sci", "context", "bspline", "dct"),
    ("golden_v3_context_residual_banded.sci", "context", "linear", "dct"),
    ("golden_v3_context_bspline_residual_banded.sci", "context", "bspline", "dct")])
def test_info_names_the_entropy_model_and_upsampling_of_each_grid_model(golden, entropy, upsampling,
                                                                        residual):
    from pathlib import Path

    path = Path(__file__).resolve().parent / "data" / golden
    code, text = run(["info", str(path), "--json"])
    assert code == 0
    model = json.loads(text)["model"]
    assert (model["entropy"], model["upsampling"], model["residual"]) == (entropy, upsampling, residual)


def test_decompress_roi_and_evaluate(sci_file, volume_tif, tmp_path):
    path, summary = sci_file
    full = tmp_path / "full.tif"
    assert run(["decompress", str(path), "-o", str(full)])[0] == 0
    roi = tmp_path / "roi.npy"
    assert run(["decompress", str(path), "-o", str(roi), "--roi", "2:5,:,10:"])[0] == 0
    decoded = tifffile.imread(full)
    np.testing.assert_array_equal(np.load(roi), decoded[2:5, :, 10:])
    code, text = run(["evaluate", str(volume_tif), str(full), "--json"])
    from_tif = json.loads(text)
    code2, text2 = run(["evaluate", str(volume_tif), str(path), "--json"])
    assert code == code2 == 0
    assert from_tif["psnr_data"] == pytest.approx(summary["psnr_data"])
    assert json.loads(text2)["psnr_data"] == pytest.approx(summary["psnr_data"])
    assert set(from_tif["accuracy"]) == {"200", "500"}


def test_errors_are_one_line_and_nonzero(sci_file, volume_tif, tmp_path, capsys):
    path, _ = sci_file
    cases = [
        ["compress", str(volume_tif), "-o", str(path), "--bpv", "1"],                 # exists
        ["compress", str(volume_tif), "-o", str(volume_tif), "--bpv", "1", "--overwrite"],  # is the input
        ["compress", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "a.sci"), "--bpv", "1"],
        ["compress", str(volume_tif), "-o", str(tmp_path / "a.sci"), "--bpv", "0.0001"],
        ["compress", str(volume_tif), "-o", str(tmp_path / "nodir" / "a.sci"), "--bpv", "1", "--steps", "1"],
        ["decompress", str(path), "-o", str(tmp_path / "r.tif"), "--roi", "1:2"],
        ["info", str(volume_tif)],
    ]
    for argv in cases:
        capsys.readouterr()
        code, _ = run(argv)
        err = capsys.readouterr().err
        assert code == 1, argv
        assert err.count("\n") == 1, err
        assert "error:" in err
        assert "Traceback" not in err
    assert not (tmp_path / "a.sci").exists()


def test_keyboard_interrupt_exits_130(volume_tif, tmp_path, monkeypatch, capsys):
    import napari_sci.core.codec as codec

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(codec, "encode", interrupted)
    code, _ = run(["compress", str(volume_tif), "-o", str(tmp_path / "i.sci"), "--bpv", "1"])
    assert code == 130
    assert not (tmp_path / "i.sci").exists()


def test_threads_option_sets_torch_threads(sci_file, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "info", str(sci_file[0])], out=io.StringIO()) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["--threads", "0", "info", str(sci_file[0])]) == 1
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_closed_pipe_ends_quietly(sci_file, monkeypatch):
    """`napari-sci info x.sci | head`: the reader went away; exit 0 without an error line."""

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["info", str(sci_file[0])], out=ClosedPipe()) == 0
    assert err.closed


def test_cli_defaults_are_the_configs():
    """Defaults live in the config dataclasses only; the CLIs read them from there."""
    from napari_sci.base.config import (
        ACCURACY_THRESHOLDS,
        AllocationConfig,
        CodingConfig,
        FitConfig,
        GridConfig,
        NetworkSpec,
        PartitionConfig,
    )
    from napari_sci.bench.settings import BenchSettings
    from napari_sci.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["compress", "in.tif", "-o", "out.sci", "--bpv", "1"])
    fit, part, net, coding = FitConfig(), PartitionConfig(), NetworkSpec(), CodingConfig()
    assert (args.steps, args.time_limit, args.device, args.seed, args.samples) == (
        fit.steps, fit.time_limit, fit.device, fit.seed, fit.samples_per_block)
    assert (args.max_blocks, args.top_m, args.depth, args.partition) == (
        part.max_blocks, part.top_m, part.max_depth, part.method)
    assert (args.fr, args.layers, args.w0) == (net.fr, net.layers, net.w0)
    assert args.allocation == AllocationConfig().rule
    assert (args.format, args.bits_per_param) == (coding.format_version, coding.bits_per_param)
    assert args.finest_level == "auto"
    assert GridConfig().finest_level is None  # auto: chosen from the volume
    assert tuple(parser.parse_args(["evaluate", "a.tif", "b.sci"]).thresholds) == ACCURACY_THRESHOLDS
    bench = parser.parse_args(["bench", "v.tif", "--out", "o"])
    settings = BenchSettings()
    assert (bench.steps, bench.device, bench.seed, bench.samples, tuple(bench.bpv)) == (
        settings.steps, settings.device, settings.seed, settings.samples, settings.bpvs)
    assert (settings.steps, settings.samples) == (fit.steps, fit.samples_per_block)


def test_finest_level_is_auto_or_a_level_number(capsys):
    from napari_sci.cli import build_parser

    parser = build_parser()
    base = ["compress", "in.tif", "-o", "out.sci", "--bpv", "1", "--finest-level"]
    assert parser.parse_args([*base, "2"]).finest_level == 2
    assert parser.parse_args([*base, "auto"]).finest_level == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "fine"])
    assert "expected auto or a level number, got 'fine'" in capsys.readouterr().err


def test_compress_with_the_latent_grid_model(volume_tif, tmp_path):
    out = tmp_path / "grid.sci"
    code, text = run(["compress", str(volume_tif), "-o", str(out), "--bpv", "1", "--steps", "30",
                      "--model", "grid", "-q", "--json"])
    assert code == 0
    summary = json.loads(text)
    assert out.stat().st_size == summary["bytes"] <= summary["target_bytes"]
    code, text = run(["info", str(out), "--json"])
    info = json.loads(text)
    assert info["format_version"] == 3
    assert info["model"]["family"] == "grid"
    assert {row["kind"] for row in info["block_table"]} <= {"grid", "constant"}


def test_every_family_option_is_a_compress_option_and_names_a_setting():
    from napari_sci.base.config import other_family_settings
    from napari_sci.cli import FAMILY_OPTIONS, build_parser

    compress = build_parser()._subparsers._group_actions[0].choices["compress"]
    options = {o for action in compress._actions for o in action.option_strings}
    assert set(FAMILY_OPTIONS) <= options
    for setting in FAMILY_OPTIONS.values():  # each belongs to exactly one family
        assert bool(other_family_settings("grid", [setting])) != bool(
            other_family_settings("siren", [setting]))
