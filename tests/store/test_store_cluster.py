"""Chunks as Dask tasks: a LocalCluster of 2 workers with a worker killed mid-run and Ctrl-C then a
resume, and (slow) a cluster given by address and a separately started ``dask scheduler`` + ``dask
worker``; every run gives the reference store's bytes, which were fitted in one process without Dask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from store_helpers import CHUNK, store_files  # type: ignore[import-not-found]

from napari_sci.base.config import StoreConfig
from napari_sci.store.run import compress_store

pytest.importorskip("distributed")


def test_local_cluster_survives_a_killed_worker_and_resumes_after_ctrl_c(reference_store, ct_zarr,
                                                                         store_config, tmp_path):
    """A LocalCluster of 2 workers: one worker is killed mid-chunk, then Ctrl-C; a rerun completes."""
    from distributed import default_client

    out = tmp_path / "local.sci.zarr"
    seen, killed = [], []

    def kill_then_interrupt(report):
        seen.append(report)
        if len(seen) == 1:
            pids = set(default_client().run(os.getpid).values())
            victim = next(pid for pid in pids if pid != report.pid)  # busy with another chunk
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        if len(seen) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the client

    with pytest.raises(KeyboardInterrupt):
        compress_store(ct_zarr, out, store_config, StoreConfig(chunks=CHUNK, workers=2),
                       on_report=kill_then_interrupt)
    assert killed
    written = store_files(out)
    assert 3 <= len(written) < 8
    reference = store_files(reference_store)
    assert all(written[key] == reference[key] for key in written)
    resumed = []
    summary = compress_store(ct_zarr, out, store_config, StoreConfig(chunks=CHUNK, workers=2),
                             on_report=resumed.append)
    assert summary.cluster == "LocalCluster of 2 workers"
    assert summary.skipped == len(written)
    assert len(resumed) == 8 - len(written)
    assert not any(r.skipped for r in resumed)  # nothing fitted twice
    assert store_files(out) == reference
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_a_killed_worker_s_chunk_is_fitted_elsewhere(reference_store, ct_zarr, store_config, tmp_path):
    """The same against a cluster started outside (``--scheduler``): the lost chunk is refitted."""
    from distributed import Client, LocalCluster

    out = tmp_path / "killed.sci.zarr"
    killed = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = set(client.run(os.getpid).values())

        def kill_the_other_worker(report):
            if not killed:
                victim = next(pid for pid in pids if pid != report.pid)
                os.kill(victim, signal.SIGKILL)  # mid-chunk: 8 chunks, 2 workers
                killed.append(victim)

        summary = compress_store(ct_zarr, out, store_config,
                                 StoreConfig(chunks=CHUNK, scheduler=cluster.scheduler_address),
                                 on_report=kill_the_other_worker)
    assert killed
    assert summary.fitted == 8
    assert store_files(out) == store_files(reference_store)


@pytest.mark.slow
def test_a_separate_dask_scheduler_and_worker_give_the_same_bytes(reference_store, ct_zarr, tmp_path):
    """`dask scheduler` + `dask worker` started as their own processes; the CLI sends them the chunks."""
    from napari_sci.cli import main

    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    dask = [sys.executable, "-m", "dask"]
    scheduler = subprocess.Popen([*dask, "scheduler", "--scheduler-file", str(scheduler_file), "--port", "0",
                                  "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen([*dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                   "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)
        out = tmp_path / "remote.sci.zarr"
        code = main(["compress", str(ct_zarr), "-o", str(out), "--bpv", "1", "--steps", "60", "--depth",
                     "1", "--seed", "7", "--chunks", str(CHUNK), "--scheduler", address, "-q"])
        assert code == 0
        assert store_files(out) == store_files(reference_store)
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
