"""Compressing a volume larger than memory into a ``.sci.zarr`` store, one Dask task per chunk.

Order of work: describe the input from its metadata → refuse what cannot work (dtype, chunk memory,
chunk budgets, an existing store with other parameters) → create the store (atomically) or resume it →
submit every chunk not yet written to a ``dask.distributed`` cluster (a LocalCluster, or the one at
``--scheduler``) → write the report into the store's attributes once every chunk is there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sci.base.config import CompressConfig, StoreConfig
from napari_sci.base.volume import check_layout
from napari_sci.errors import SciConfigError, SciFormatError, SciPathError, SciStoreMismatchError
from napari_sci.store.layout import (
    ARRAY_NAME,
    ATTRS_KEY,
    STORE_VERSION,
    ChunkGrid,
    check_store_output,
    chunk_seed,
    chunk_written,
    read_attributes,
)
from napari_sci.store.source import SourceInfo, describe_source, ome_attributes
from napari_sci.store.task import ChunkJob, ChunkReport, fit_chunk


@dataclass(frozen=True)
class StoreSummary:
    """A finished (or resumed and finished) store: what was fitted, its size and quality."""

    output: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    n_chunks: int
    fitted: int
    skipped: int
    n_bytes: int
    target_bytes: int
    bpv: float
    psnr_min: float
    psnr_max: float
    seconds: float
    cluster: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _json_value(value: Any) -> Any:
    """Finite floats stay, others become strings: the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def store_config_for(config: CompressConfig) -> CompressConfig:
    """The compress settings a store's chunks use: ``auto`` device means CPU (reproducible bytes)."""
    if config.fit.device == "auto":
        return replace(config, fit=replace(config.fit, device="cpu"))
    return config


def store_params(info: SourceInfo, grid: ChunkGrid, config: CompressConfig) -> dict[str, Any]:
    """Every setting that changes a chunk's bytes; a rerun must match them exactly."""
    settings = dataclasses.asdict(config)
    settings["fit"].pop("report_every", None)
    return json.loads(json.dumps({"shape": list(info.shape), "dtype": str(info.dtype),
                                  "chunks": list(grid.chunks), "compress": settings}))


def _budget(config: CompressConfig) -> dict[str, Any]:
    if config.budget.bpv is not None:
        return {"rule": "same-bpv", "bpv": config.budget.bpv,
                "detail": "every chunk is fitted to this BPV of its own voxels"}
    return {"rule": "same-ratio", "ratio": config.budget.ratio,
            "detail": "every chunk is fitted to this ratio of its own raw bytes"}


def _distinct_chunk_shapes(grid: ChunkGrid) -> set[tuple[int, ...]]:
    per_axis = [{c, s - (n - 1) * c} for c, s, n in zip(grid.chunks, grid.shape, grid.counts)]
    return set(itertools.product(*per_axis))


def check_before_work(info: SourceInfo, grid: ChunkGrid, config: CompressConfig) -> None:
    """Refuse an input or budget that could not be compressed chunk by chunk, before anything starts."""
    from napari_sci.core.codec import check_budget_for
    from napari_sci.errors import SciBudgetError

    check_layout(grid.chunks, info.dtype)  # dtype, 2D/3D, and one chunk's fit fits this machine
    for shape in sorted(_distinct_chunk_shapes(grid)):
        try:
            check_budget_for(shape, info.dtype, config)
        except SciBudgetError as error:
            raise SciBudgetError(f"chunks of shape {shape} cannot be compressed at this budget: {error}"
                                 "; choose --chunks so that the edge chunks are larger, or a larger "
                                 "budget") from error


def check_in_a_subprocess(info: SourceInfo, grid: ChunkGrid, config: CompressConfig) -> None:
    """:func:`check_before_work` in a short-lived process: the budget arithmetic lives beside the
    encoder, which imports torch, and the process that only schedules chunks should not hold torch's
    ~250 MB while the workers fit (the store's peak memory is summed over all processes)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(check_before_work, info, grid, config).result()


def _create_store(output: Path, info: SourceInfo, grid: ChunkGrid, attrs: dict[str, Any]) -> None:
    """Create the group and its array in a temp folder beside ``output``, then rename it into place."""
    import shutil

    import zarr

    from napari_sci.store.codec import SciChunkCodec

    temp = output.with_name(f".{output.name}.{os.getpid()}.creating")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        group = zarr.create_group(str(temp), attributes=attrs, zarr_format=3)
        group.create_array(ARRAY_NAME, shape=info.shape, chunks=grid.chunks, dtype=info.dtype,
                           serializer=SciChunkCodec(), compressors=None, fill_value=0)
        os.replace(temp, output)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key} {a!r} → {b!r}")
    return found


def open_or_create(output: Path, info: SourceInfo, grid: ChunkGrid, config: CompressConfig) -> None:
    """Create the store, or check that an existing one was started with exactly these parameters."""
    params = store_params(info, grid, config)
    if output.exists():
        try:
            stored = read_attributes(output)[ATTRS_KEY]
        except SciFormatError as error:
            raise SciPathError(f"{output} exists and is not a napari-sci store ({error}); choose "
                               "another output") from error
        differences = _differences(stored.get("params", {}), params)
        if differences:
            raise SciStoreMismatchError(
                f"{output} was started with other parameters ({'; '.join(differences[:4])}); rerun "
                "with the original ones to complete it, or write a new store")
        return
    attrs = {"ome": ome_attributes(info),
             ATTRS_KEY: {"store_version": STORE_VERSION, "params": params, "budget": _budget(config),
                         "chunks": list(grid.chunks), "report": None}}
    _create_store(output, info, grid, attrs)


def chunk_jobs(output: Path, info: SourceInfo, grid: ChunkGrid, config: CompressConfig) -> list[ChunkJob]:
    """A job for every chunk of the grid, in C order."""
    return [ChunkJob(str(output), info.spec, index, grid.slices(index), config,
                     chunk_seed(config.fit.seed, grid, index), info.spacing)
            for index in grid.indices()]


@contextlib.contextmanager
def dask_client(settings: StoreConfig) -> Iterator[tuple[Any, str]]:
    """A ``distributed.Client``: to the scheduler at ``settings.scheduler``, else to a new LocalCluster
    of worker processes with one thread each (closed again on exit, Ctrl-C included)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise SciConfigError("chunked stores need dask.distributed: pip install 'napari-sci[cluster]'"
                             ) from error
    if settings.scheduler is not None:
        try:
            client = Client(settings.scheduler, timeout="15s")
        except OSError as error:
            raise SciConfigError(f"cannot reach the dask scheduler at {settings.scheduler}: {error}"
                                 ) from error
        with client:
            yield client, f"scheduler {settings.scheduler}"
        return
    workers = settings.worker_count(os.cpu_count())
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=threads) as cluster, Client(cluster) as client:
        yield client, f"LocalCluster of {workers} worker{'s' * (workers != 1)}"


def _task_key(output: Path, params: dict[str, Any], index: tuple[int, ...]) -> str:
    digest = hashlib.sha1(f"{output.resolve()}|{json.dumps(params, sort_keys=True)}".encode()).hexdigest()
    return f"sci-chunk-{digest[:12]}-{'-'.join(map(str, index))}"


def run_jobs(client: Any, jobs: list[ChunkJob], retries: int, key: Callable[[ChunkJob], str],
             on_report: Callable[[ChunkReport], None]) -> list[ChunkReport]:
    """Submit ``jobs`` and collect their reports as they finish; cancels the rest on any failure."""
    from distributed import as_completed

    futures = [client.submit(fit_chunk, job, key=key(job), retries=retries, pure=False) for job in jobs]
    reports = []
    try:
        for future in as_completed(futures):
            report = future.result()
            reports.append(report)
            on_report(report)
    except BaseException:
        client.cancel(futures)
        raise
    return reports


def write_report(output: Path, report: dict[str, Any]) -> None:
    """Put ``report`` into the root group's ``napari_sci`` attributes (zarr.json rewritten atomically)."""
    from napari_sci.io.container import write_atomic

    meta = output / "zarr.json"
    document = json.loads(meta.read_text(encoding="utf-8"))
    document["attributes"][ATTRS_KEY]["report"] = report
    write_atomic(meta, json.dumps(document, indent=2).encode(), overwrite=True)


def _stale_temps(output: Path) -> None:
    for temp in (output / ARRAY_NAME / "c").rglob(".*.tmp"):
        temp.unlink(missing_ok=True)


def compress_store(input_path: str | os.PathLike[str], output: str | os.PathLike[str],
                   config: CompressConfig, settings: StoreConfig,
                   on_report: Callable[[ChunkReport], None] | None = None,
                   on_plan: Callable[[int, int], None] | None = None) -> StoreSummary:
    """Compress the input at ``input_path`` into the store ``output``; resumes a store begun before.

    ``on_plan(total, already_written)`` is called once before fitting, ``on_report`` per finished chunk.
    """
    started = time.perf_counter()
    source, target = Path(input_path), Path(output)
    check_store_output(target, source)
    info = describe_source(source)
    config = store_config_for(config)
    grid = ChunkGrid.cubic(info.shape, settings.chunks)
    if settings.workers == 0 or "torch" in sys.modules:
        check_before_work(info, grid, config)
    else:
        check_in_a_subprocess(info, grid, config)
    open_or_create(target, info, grid, config)
    params = store_params(info, grid, config)
    jobs = chunk_jobs(target, info, grid, config)
    pending = [job for job in jobs if not chunk_written(target, job.index)]
    if on_plan is not None:
        on_plan(len(jobs), len(jobs) - len(pending))
    cluster = "nothing to fit"
    if pending and settings.workers == 0:
        cluster = "this process (no Dask)"
        for job in pending:
            (on_report or (lambda report: None))(fit_chunk(job))
    elif pending:
        with dask_client(settings) as (client, cluster):
            run_jobs(client, pending, settings.retries, lambda job: _task_key(target, params, job.index),
                     on_report or (lambda report: None))
    return finish(target, info, grid, config, jobs, len(pending), time.perf_counter() - started, cluster)


def finish(output: Path, info: SourceInfo, grid: ChunkGrid, config: CompressConfig,
           jobs: list[ChunkJob], fitted: int, seconds: float, cluster: str) -> StoreSummary:
    """Check that every chunk is written, then record and return the store's report."""
    from napari_sci.io.container import parse

    sizes, psnrs = [], []
    target_bytes = 0
    for job in jobs:
        path = output.joinpath(ARRAY_NAME, "c", *map(str, job.index))
        try:
            data = path.read_bytes()
            contents = parse(data)
        except (OSError, SciFormatError) as error:
            raise SciFormatError(f"chunk {job.index} of {output} is missing or damaged after the run "
                                 f"({error}); rerun the same command to fit it") from error
        sizes.append(len(data))
        psnrs.append(float(contents.header.psnr))
        n_voxels = math.prod(s.stop - s.start for s in job.slices)
        target_bytes += config.budget.target_bytes(n_voxels, info.dtype.itemsize)
    _stale_temps(output)
    n_voxels = math.prod(info.shape)
    finite = [p for p in psnrs if math.isfinite(p)] or [math.inf]
    summary = StoreSummary(str(output), info.shape, str(info.dtype), grid.chunks, len(jobs), fitted,
                           len(jobs) - fitted, int(sum(sizes)), target_bytes,
                           8 * sum(sizes) / n_voxels, float(np.min(finite)), float(np.max(finite)),
                           seconds, cluster)
    report = {k: _json_value(v) for k, v in summary.as_dict().items()
              if k not in ("output", "fitted", "skipped", "seconds", "cluster")}
    report["budget"] = _budget(config)
    write_report(output, report)
    return summary
