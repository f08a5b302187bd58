"""Compressing into a store: resume, refusals before work, the command line (no cluster needed)."""

from __future__ import annotations

import json
import shutil

import pytest
from store_helpers import CHUNK, store_files  # type: ignore[import-not-found]

from napari_sci.base.config import StoreConfig, compress_config
from napari_sci.cli import main
from napari_sci.errors import SciBudgetError, SciStoreMismatchError
from napari_sci.store.run import compress_store


def test_a_rerun_fits_only_missing_or_damaged_chunks(reference_store, ct_zarr, store_config, tmp_path):
    copy = tmp_path / "resume.sci.zarr"
    shutil.copytree(reference_store, copy)
    (copy / "0" / "c" / "1" / "0" / "1").unlink()
    damaged = copy / "0" / "c" / "0" / "1" / "0"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # a chunk cut short: fitted again
    fitted = []
    summary = compress_store(ct_zarr, copy, store_config, StoreConfig(chunks=CHUNK, workers=0),
                             on_report=lambda report: fitted.append(report.index))
    assert sorted(fitted) == [(0, 1, 0), (1, 0, 1)]
    assert (summary.fitted, summary.skipped) == (2, 6)
    assert store_files(copy) == store_files(reference_store)


def test_a_rerun_of_a_complete_store_starts_no_cluster(reference_store, ct_zarr, store_config, tmp_path):
    copy = tmp_path / "done.sci.zarr"
    shutil.copytree(reference_store, copy)
    summary = compress_store(ct_zarr, copy, store_config, StoreConfig(chunks=CHUNK, workers=2))
    assert summary.fitted == 0
    assert summary.cluster == "nothing to fit"
    assert store_files(copy) == store_files(reference_store)


def test_a_rerun_with_other_parameters_is_refused(reference_store, ct_zarr, store_config, tmp_path):
    copy = tmp_path / "other.sci.zarr"
    shutil.copytree(reference_store, copy)
    before = store_files(copy)
    other = compress_config(bpv=1.0, steps=61, max_depth=1, seed=7)
    with pytest.raises(SciStoreMismatchError, match="steps 60"):
        compress_store(ct_zarr, copy, other, StoreConfig(chunks=CHUNK, workers=0))
    with pytest.raises(SciStoreMismatchError, match="chunks"):
        compress_store(ct_zarr, copy, store_config, StoreConfig(chunks=48, workers=0))
    assert store_files(copy) == before


def test_a_budget_an_edge_chunk_cannot_meet_is_refused_before_anything_is_written(ct_zarr, tmp_path):
    out = tmp_path / "tiny.sci.zarr"
    with pytest.raises(SciBudgetError, match=r"chunks of shape \(32, 16, 8\)"):
        compress_store(ct_zarr, out, compress_config(bpv=0.05, steps=5), StoreConfig(chunks=CHUNK, workers=0))
    assert not out.exists()


def test_the_command_line_writes_the_same_store(reference_store, ct_zarr, tmp_path, capsys):
    out = tmp_path / "cli.sci.zarr"
    code = main(["compress", str(ct_zarr), "-o", str(out), "--bpv", "1", "--steps", "60", "--depth", "1",
                 "--model", "siren",
                 "--seed", "7", "--chunks", str(CHUNK), "--workers", "0", "--json", "-q"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_chunks"] == 8
    assert summary["n_bytes"] <= summary["target_bytes"]
    assert store_files(out) == store_files(reference_store)


@pytest.mark.parametrize(("extra", "message"), [
    (["--psnr", "30"], "--psnr"),
    (["--bpv", "1", "--overwrite"], "resumed, never overwritten"),
    (["--bpv", "1", "--channel-axis", "0"], "--channel-axis"),
])
def test_the_command_line_refuses_what_a_store_cannot_do(ct_zarr, tmp_path, capsys, extra, message):
    code = main(["compress", str(ct_zarr), "-o", str(tmp_path / "x.sci.zarr"), *extra])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.sci.zarr").exists()


def test_store_options_need_a_store_output(ct_zarr, tmp_path, capsys):
    code = main(["compress", str(ct_zarr), "-o", str(tmp_path / "x.sci"), "--bpv", "1", "--chunks", "32"])
    assert code == 1
    assert "*.sci.zarr" in capsys.readouterr().err


def test_the_check_before_work_runs_in_a_subprocess_too(ct_zarr):
    """The scheduling process keeps torch out of its memory by checking in a short-lived process."""
    from napari_sci.store.layout import ChunkGrid
    from napari_sci.store.run import check_in_a_subprocess
    from napari_sci.store.source import describe_source

    info = describe_source(ct_zarr)
    grid = ChunkGrid.cubic(info.shape, CHUNK)
    check_in_a_subprocess(info, grid, compress_config(bpv=1.0))
    with pytest.raises(SciBudgetError, match=r"chunks of shape \(32, 16, 8\)"):
        check_in_a_subprocess(info, grid, compress_config(bpv=0.05))
