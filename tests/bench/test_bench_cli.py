"""``napari-sci bench`` in-process on a tiny real crop with cheap codecs."""

import io
import json

import pytest
import tifffile

from napari_sci.bench.results import BenchReport
from napari_sci.cli import main


def run(argv):
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


@pytest.fixture(scope="module")
def tifs(tmp_path_factory, lsm64, mri64):
    folder = tmp_path_factory.mktemp("bench")
    tifffile.imwrite(folder / "lsm.tif", lsm64[:8])
    tifffile.imwrite(folder / "mri.tif", mri64[:8])
    return folder / "lsm.tif", folder / "mri.tif"


def test_bench_writes_json_and_plots(tifs, tmp_path):
    out = tmp_path / "out"
    code, text = run(["bench", *map(str, tifs), "--bpv", "0.5", "1", "--codecs", "zfp", "jpeg2000",
                      "--out", str(out), "-q"])
    assert code == 0
    report = BenchReport.from_json((out / "results.json").read_text())
    assert len(report.results) == 2 * 2 * 2
    assert not report.missing
    assert {r.codec for r in report.results} == {"zfp", "jpeg2000"}
    assert {r.volume for r in report.results} == {"lsm", "mri"}
    assert all(r.ok and r.bytes <= r.target_bytes for r in report.results)
    for name in ("lsm.png", "mri.png", "average.png"):
        assert (out / name).stat().st_size > 10_000
    assert "jpeg2000" in text
    assert "psnr_target_db" in text


def test_bench_reports_a_missing_codec_on_stderr(tifs, tmp_path, capsys):
    code, text = run(["bench", str(tifs[0]), "--bpv", "1", "--codecs", "hevc", "sz3", "--out",
                      str(tmp_path), "--ffmpeg", "/nonexistent/ffmpeg", "--no-plots", "-q",
                      "--crop", "0:4,:,:"])
    assert code == 0
    assert "codec hevc is missing" in capsys.readouterr().err
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["missing"][0]["codec"] == "hevc"
    assert [r["codec"] for r in saved["results"]] == ["sz3"]
    assert saved["volumes"][0]["shape"] == [4, 64, 64]
    assert "missing: hevc" in text


def test_bench_bad_crop_is_one_line_error(tifs, tmp_path, capsys):
    code, _ = run(["bench", str(tifs[0]), "--codecs", "zfp", "--out", str(tmp_path), "--crop", "1:2"])
    assert code == 1
    assert "--crop" in capsys.readouterr().err


def test_codec_groups_expand(tmp_path):
    from napari_sci.bench.cli import _codecs

    assert _codecs(["classical", "zfp", "sci"]) == (
        "hevc", "h264", "jpeg", "jpeg2000", "jpegxl", "zfp", "sz3", "sperr", "sci")
