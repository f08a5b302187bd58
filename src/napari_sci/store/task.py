"""One chunk of a ``.sci.zarr`` store fitted as one Dask task: read its region, encode, write atomically.

The task is a plain function of a picklable :class:`ChunkJob`, so any ``dask.distributed`` worker runs
it: it opens the input itself, uses one torch thread and the chunk's own seed, and writes nothing until
the chunk's ``.sci`` file is complete. A chunk already written (a rerun, or a task run twice after a lost
worker) is not fitted again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from napari_sci.base.config import CompressConfig
from napari_sci.store.layout import chunk_path, chunk_written, write_chunk
from napari_sci.store.source import SourceSpec, read_region


@dataclass(frozen=True)
class ChunkJob:
    """Everything one task needs: where to read and write, which chunk, and how to fit it."""

    store: str
    source: SourceSpec
    index: tuple[int, ...]
    slices: tuple[slice, ...]
    config: CompressConfig
    seed: int
    spacing: tuple[float, ...] | None


@dataclass(frozen=True)
class ChunkReport:
    """What a task did: the chunk's bytes and PSNR, its time, and whether it was already there."""

    index: tuple[int, ...]
    n_bytes: int
    n_voxels: int
    psnr: float
    seconds: float
    skipped: bool
    pid: int


def _existing(job: ChunkJob, n_voxels: int) -> ChunkReport:
    from napari_sci.io.container import parse

    data = chunk_path(Path(job.store), job.index).read_bytes()
    psnr = float(parse(data).header.psnr)
    return ChunkReport(job.index, len(data), n_voxels, psnr, 0.0, True, os.getpid())


def fit_chunk(job: ChunkJob) -> ChunkReport:
    """Fit chunk ``job.index`` unless it is already written; returns its report."""
    import torch

    from napari_sci.core.codec import encode

    store = Path(job.store)
    n_voxels = 1
    for s in job.slices:
        n_voxels *= s.stop - s.start
    if chunk_written(store, job.index):
        return _existing(job, n_voxels)
    started = time.perf_counter()
    torch.set_num_threads(1)  # one thread per task: bytes independent of the worker, no oversubscription
    values = read_region(job.source, job.slices)
    config = replace(job.config, fit=replace(job.config.fit, seed=job.seed))
    result = encode(values, config, spacing=job.spacing)
    del values
    write_chunk(store, job.index, result.data)
    return ChunkReport(job.index, result.n_bytes, n_voxels, float(result.metrics.psnr_data),
                       time.perf_counter() - started, False, os.getpid())
