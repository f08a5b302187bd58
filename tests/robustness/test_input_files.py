"""Files: inputs are never modified, outputs are never half-written, unreadable inputs are one-line
errors, and Ctrl-C (a real SIGINT to a real process) exits 130 leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_sci
from napari_sci.cli import main
from napari_sci.core.volume_files import read_volume
from napari_sci.errors import SciCancelledError, SciInputError, SciPathError
from napari_sci.io import container

REPO = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue(), capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1, err
    assert err.startswith("napari-sci ")
    assert "error:" in err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


@pytest.fixture
def tif(tmp_path, mri) -> Path:
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, mri[:16, :24, :24], imagej=True, metadata={"spacing": 2.0, "axes": "ZYX"})
    return path


def test_input_is_never_modified(tif, tmp_path, capsys):
    before, mtime = digest(tif), tif.stat().st_mtime_ns
    sci = tmp_path / "out.sci"
    assert run_cli(["compress", tif, "-o", sci, "--bpv", "2", "--steps", "5", "-q"], capsys)[0] == 0
    assert run_cli(["decompress", sci, "-o", tmp_path / "back.tif"], capsys)[0] == 0
    assert run_cli(["evaluate", tif, sci], capsys)[0] == 0
    sci_digest = digest(sci)
    assert run_cli(["info", sci], capsys)[0] == 0
    assert digest(tif) == before
    assert tif.stat().st_mtime_ns == mtime
    assert digest(sci) == sci_digest


def test_existing_output_needs_overwrite(tif, tmp_path, capsys):
    out = tmp_path / "out.sci"
    out.write_bytes(b"precious")
    code, _, err = run_cli(["compress", tif, "-o", out, "--bpv", "2", "--steps", "5", "-q"], capsys)
    assert_one_line_error(code, err, "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    code, _, err = run_cli(["compress", tif, "-o", out, "--bpv", "2", "--steps", "5", "-q",
                            "--overwrite"], capsys)
    assert code == 0, err
    assert out.read_bytes().startswith(b"\x89SCI")
    back = tmp_path / "back.npy"
    back.write_bytes(b"keep")
    code, _, err = run_cli(["decompress", out, "-o", back], capsys)
    assert_one_line_error(code, err, "exists")
    assert back.read_bytes() == b"keep"


def test_output_problems(tif, tmp_path, capsys):
    cases = [
        (tmp_path / "missing" / "o.sci", "does not exist"),
        (tmp_path, "is a directory"),
        (tif, "overwrite the input"),
    ]
    for output, words in cases:
        code, _, err = run_cli(["compress", tif, "-o", output, "--bpv", "2", "--overwrite", "-q"],
                               capsys)
        assert_one_line_error(code, err, words)


def _unreadable_inputs(folder: Path, mri: np.ndarray) -> dict[str, Path]:
    good = folder / "good.tif"
    tifffile.imwrite(good, mri[:8, :16, :16])
    data = good.read_bytes()
    made = {
        "garbage.tif": os.urandom(3000), "empty.tif": b"", "tiny.tif": b"II*",
        "half.tif": data[: len(data) // 2], "cut-data.tif": data[: len(data) - 100],
        "garbage.npy": os.urandom(300),
    }
    for name, content in made.items():
        (folder / name).write_bytes(content)
    np.save(folder / "object.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    np.save(folder / "full.npy", mri[:8, :16, :16])
    (folder / "cut.npy").write_bytes((folder / "full.npy").read_bytes()[:-50])
    (folder / "folder.tif").mkdir()
    (folder / "plain-folder").mkdir()
    (folder / "notes.txt").write_text("hello")
    import zarr

    zarr.open_group(str(folder / "group.zarr"), mode="w").create_array("a", shape=(4, 4, 4),
                                                                       dtype="u1")
    names = [*made, "object.npy", "cut.npy", "folder.tif", "plain-folder", "notes.txt", "group.zarr",
             "missing.tif"]
    return {name: folder / name for name in names}


def test_unreadable_inputs_are_one_line_errors(tmp_path, mri, capsys):
    inputs = _unreadable_inputs(tmp_path, mri)
    for path in inputs.values():
        with pytest.raises((SciInputError, SciPathError)):
            read_volume(path)
        code, _, err = run_cli(["compress", path, "-o", tmp_path / "o.sci", "--bpv", "1", "-q"],
                               capsys)
        assert_one_line_error(code, err, str(path.name))
    assert not (tmp_path / "o.sci").exists()


def test_object_npy_is_never_unpickled(tmp_path, monkeypatch):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle must never be used")

    import pickle

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    with pytest.raises(SciInputError, match="never unpickles"):
        read_volume(tmp_path / "o.npy")


def test_permission_denied(tmp_path, monkeypatch, mri, capsys):
    path = tmp_path / "locked.npy"
    np.save(path, mri[:4, :8, :8])
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: simulate what a normal user would get
        def denied(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "open", denied)
    try:
        with pytest.raises(SciPathError, match="permission denied"):
            read_volume(path)
        code, _, err = run_cli(["compress", path, "-o", tmp_path / "o.sci", "--bpv", "4"], capsys)
        assert_one_line_error(code, err, "permission denied")
    finally:
        path.chmod(0o644)


class _FailingStream:
    """A file object whose write fails like a full disk."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        self.real.write(data[:10])
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_disk_full_leaves_nothing(tmp_path, monkeypatch):
    real_fdopen = os.fdopen
    monkeypatch.setattr(container.os, "fdopen", lambda *a, **k: _FailingStream(real_fdopen(*a, **k)))
    with pytest.raises(SciPathError, match="No space left on device; nothing was written"):
        container.write_atomic(tmp_path / "a.sci", b"x" * 5000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt(), OSError(5, "I/O")])
def test_failure_at_rename_keeps_the_old_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "a.sci"
    target.write_bytes(b"old")

    def fail(*args):
        raise failure

    monkeypatch.setattr(container.os, "replace", fail)
    with pytest.raises((type(failure), SciPathError)):
        container.write_atomic(target, b"new", overwrite=True)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_unwritable_folder(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(container.tempfile, "mkstemp", denied)
    with pytest.raises(SciPathError, match=r"cannot write in .*Permission denied"):
        container.write_atomic(tmp_path / "a.sci", b"x")


def test_interrupt_while_writing_via_cli(tif, tmp_path, monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(container.os, "replace", interrupted)
    code, _, err = run_cli(["compress", tif, "-o", tmp_path / "o.sci", "--bpv", "2", "--steps", "5",
                            "-q"], capsys)
    assert code == 130
    assert err == "napari-sci compress: interrupted; nothing was written\n"
    assert not (tmp_path / "o.sci").exists()
    assert leftovers(tmp_path) == []


def test_cancel_writes_nothing(mri, tmp_path):
    stop = threading.Event()

    def on_event(event):
        if type(event).__name__ == "FitProgress":
            stop.set()

    with pytest.raises(SciCancelledError, match="nothing written"):
        napari_sci.compress(mri[:16, :16, :16], bpv=2, steps=10_000, device="cpu", out=tmp_path / "c.sci",
                            on_event=on_event, stop=stop)
    assert list(tmp_path.iterdir()) == []


def test_channel_files_are_all_or_nothing(tmp_path, monkeypatch, mri, capsys):
    path = tmp_path / "zcyx.npy"
    np.save(path, np.stack([mri[:8, :16, :16], mri[8:16, :16, :16], mri[16:24, :16, :16]], axis=1))
    real = container.write_atomic
    calls = []

    def third_fails(target, data, overwrite=False):
        calls.append(target)
        if len(calls) == 3:
            raise SciPathError("cannot write: No space left on device")
        return real(target, data, overwrite)

    import napari_sci.core.codec as codec

    monkeypatch.setattr(codec, "write_atomic", third_fails)
    code, _, err = run_cli(["compress", path, "-o", tmp_path / "o.sci", "--bpv", "4", "--steps", "3",
                            "-q", "--channel-axis", "1"], capsys)
    assert_one_line_error(code, err, "No space")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zcyx.npy"]


def test_sigint_during_compress_exits_130_and_leaves_nothing(tmp_path, mri):
    """A real process, a real SIGINT in the middle of fitting."""
    source = tmp_path / "in.npy"
    np.save(source, mri)
    out = tmp_path / "out.sci"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "napari_sci", "compress", str(source), "-o", str(out), "--bpv", "1",
         "--steps", "1000000", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        for line in process.stderr:  # wait until fitting has started
            lines.append(line)
            if line.startswith("fit:"):
                break
        assert process.poll() is None, "".join(lines)
        process.send_signal(signal.SIGINT)
        _rest_out, rest_err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, rest_err
    messages = [line for line in rest_err.replace("\r", "\n").splitlines()
                if line.startswith("napari-sci")]
    assert messages == ["napari-sci compress: interrupted; nothing was written"], rest_err
    assert "Traceback" not in rest_err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]
