"""``napari-sci compress a b … -o DIR``, in-process through ``main(argv)``."""

import io
import json

import numpy as np
import pytest
import tifffile

from napari_sci.cli import main
from napari_sci.io.container import read_sci

FAST = ["--bpv", "2", "--steps", "4", "--partition", "none", "--fr", "1", "-q", "--compile", "off",
        "--model", "siren"]


def run(argv):
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


@pytest.fixture
def inputs(tmp_path, ct, mri):
    paths = []
    for name, volume in (("ct", ct[:8, :16, :16]), ("mri", mri[:8, :16, :16])):
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, volume)
        paths.append(path)
    out = tmp_path / "out"
    out.mkdir()
    return paths, out


def test_batch_writes_one_file_per_input_and_a_json_list(inputs):
    paths, out = inputs
    code, text = run(["compress", *map(str, paths), "-o", str(out), "--json", *FAST])
    summaries = json.loads(text)
    assert code == 0
    assert [s["output"] for s in summaries] == [str(out / "ct.sci"), str(out / "mri.sci")]
    for path, summary in zip(paths, summaries):
        contents = read_sci(summary["output"])
        assert contents.header.shape == tifffile.imread(path).shape
        assert summary["bytes"] == (out / f"{path.stem}.sci").stat().st_size


def test_batch_file_is_the_single_commands_file(inputs, tmp_path):
    paths, out = inputs
    assert run(["compress", *map(str, paths), "-o", str(out), *FAST])[0] == 0
    single = tmp_path / "single.sci"
    assert run(["compress", str(paths[1]), "-o", str(single), *FAST])[0] == 0
    assert (out / "mri.sci").read_bytes() == single.read_bytes()


def test_batch_refuses_before_fitting(inputs, tmp_path, capsys):
    paths, out = inputs
    code, _ = run(["compress", *map(str, paths), "-o", str(tmp_path / "missing"), *FAST])
    assert code == 1
    assert "directory" in capsys.readouterr().err
    (out / "mri.sci").write_bytes(b"old")
    code, _ = run(["compress", *map(str, paths), "-o", str(out), *FAST])
    assert code == 1
    assert "exists" in capsys.readouterr().err
    assert not (out / "ct.sci").exists()  # refused before the first input was compressed
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not a tiff")
    code, _ = run(["compress", str(paths[0]), str(broken), "-o", str(out), "--overwrite", *FAST])
    assert code == 1
    assert "broken.tif" in capsys.readouterr().err
    assert not (out / "ct.sci").exists()
    code, _ = run(["compress", str(paths[0]), str(paths[0]), "-o", str(out), "--overwrite", *FAST])
    assert code == 1
    assert "both write" in capsys.readouterr().err


def test_one_failure_keeps_the_others(inputs, tmp_path, capsys):
    paths, out = inputs
    flat = tmp_path / "big.npy"  # readable, but 4-D without --channel-axis: refused when compressed
    np.save(flat, np.zeros((2, 4, 8, 8), np.uint8))
    code, text = run(["compress", str(paths[0]), str(flat), str(paths[1]), "-o", str(out), "--json",
                      *FAST])
    summaries = json.loads(text)
    assert code == 1
    assert [("error" in s) for s in summaries] == [False, True, False]
    assert [(out / f"{n}.sci").exists() for n in ("ct", "big", "mri")] == [True, False, True]
    assert "big.npy" in capsys.readouterr().err
    code, text = run(["compress", str(paths[0]), str(flat), "-o", str(out), "--overwrite", *FAST])
    assert code == 1
    assert "1 of 2 compressed" in text
    assert "FAILED" in text


def test_batch_with_two_worker_processes(inputs):
    paths, out = inputs
    code, text = run(["compress", *map(str, paths), "-o", str(out), "--json", "--workers", "2", *FAST])
    assert code == 0
    assert all("error" not in s for s in json.loads(text))
    assert [(out / f"{n}.sci").exists() for n in ("ct", "mri")] == [True, True]


def test_output_names():
    from napari_sci.cli_batch import _stem

    assert [_stem(n) for n in ("a.tif", "d/a.ome.tiff", "scan.2.npy", "v.zarr/", "x.TIF")] == [
        "a", "a", "scan.2", "v", "x"]


def test_default_workers():
    from napari_sci.cli_batch import _default_workers

    assert _default_workers("cpu", 8) == 1
    assert _default_workers("auto", 1) == 1


def test_batch_refuses_channel_axis_and_bad_workers(inputs, capsys):
    paths, out = inputs
    assert run(["compress", *map(str, paths), "-o", str(out), "--channel-axis", "0", *FAST])[0] == 1
    assert "one input" in capsys.readouterr().err
    assert run(["compress", *map(str, paths), "-o", str(out), "--workers", "0", *FAST])[0] == 1
    assert "--workers" in capsys.readouterr().err
