"""A volume larger than memory through a chunked ``.sci.zarr`` store (issue 14), written as JSON.

    OMP_NUM_THREADS=1 python benchmarks/zarr_scale.py --work /tmp/zarr_scale --out benchmarks/results/zarr

1. Builds a ≥ 1 GiB uint16 zarr array on disk by tiling the CT development volume, every other copy
   mirrored (so no seam is a jump), chunk by chunk: the volume is never in memory.
2. Fits the same fixed subset of chunks (``--subset``, chosen across the volume and including the 2×2×2
   chunks of the quality region) into one store with a LocalCluster of 1 worker and into another with
   2 workers, through the same functions ``napari-sci compress IN -o OUT.sci.zarr`` runs, sampling the
   summed RSS of this process and all its descendants (scheduler, nannies, workers) every 0.2 s.
   Chunks per minute are counted from the first finished chunk to the last (the workers' start and
   torch import excluded; both are reported).
3. Compares the two stores byte for byte (a chunk's bytes must not depend on the worker count).
4. Decodes the quality region from the store and compares it, by PSNR over the data range, with the
   same region compressed as one ``.sci`` file at the same BPV and steps.

Timings are wall-clock on a 2-core machine that may be shared: the JSON records the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import threading
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TILES = (4, 9, 7)  # 164·4 × 126·9 × 120·7 voxels, cropped to multiples of the chunk: 1.08 GiB
GiB = 2**30


def mirrored_index(length: int, start: int, stop: int) -> np.ndarray:
    """Indices into an axis of ``length`` for positions start:stop of its mirrored tiling."""
    position = np.arange(start, stop) % (2 * length)
    return np.where(position < length, position, 2 * length - 1 - position)


def build_input(path: Path, chunk: int) -> tuple[tuple[int, ...], float]:
    """The tiled CT as a zarr array at ``path`` (reused when present); its shape and build seconds."""
    import tifffile
    import zarr

    base = tifffile.imread(DATA / "ct_aorta_totalseg.tif")
    shape = tuple((n * t) // chunk * chunk for n, t in zip(base.shape, TILES))
    if (path / "zarr.json").exists():
        array = zarr.open_array(str(path), mode="r")
        if tuple(array.shape) == shape:
            return shape, 0.0
        shutil.rmtree(path)
    started = time.perf_counter()
    array = zarr.create_array(str(path), shape=shape, chunks=(chunk,) * 3, dtype=base.dtype)
    slab = chunk  # one z slab of chunks at a time: bounded memory
    for z in range(0, shape[0], slab):
        zi = mirrored_index(base.shape[0], z, min(z + slab, shape[0]))
        yi = mirrored_index(base.shape[1], 0, shape[1])
        xi = mirrored_index(base.shape[2], 0, shape[2])
        array[z:z + slab] = base[np.ix_(zi, yi, xi)]
    return shape, time.perf_counter() - started


class PeakRss:
    """Samples the summed RSS of this process and its descendants every ``every`` seconds, and their
    PSS (shared pages such as torch's libraries counted once) every ``pss_every``-th sample; keeps
    the peaks.

    PSS reads /proc/PID/smaps, about 8 ms a torch process here: sampled as often as RSS, the probe
    itself took a quarter of a core, which the 2-worker run, not the 1-worker one, paid for (the
    first measured speed-up, 1.57×, included it).
    """

    def __init__(self, every: float = 0.2, pss_every: int = 25) -> None:
        import psutil

        self.me = psutil.Process()
        self.every = every
        self.pss_every = pss_every
        self.samples = 0
        self.peak = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        with_pss = self.samples % self.pss_every == 0
        self.samples += 1
        total, pss, count = 0, 0, 0
        for process in [self.me, *self.me.children(recursive=True)]:
            try:
                info = process.memory_full_info() if with_pss else process.memory_info()
            except psutil.Error:
                continue
            total += info.rss
            pss += getattr(info, "pss", info.rss)
            count += 1
        if total > self.peak:
            self.peak, self.peak_processes = total, count
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def subset_jobs(jobs: list, grid, region_chunks: set[tuple[int, ...]], count: int) -> list:
    """``count`` jobs: the quality region's chunks and the rest spread evenly over the volume."""
    chosen = [j for j in jobs if j.index in region_chunks]
    others = [j for j in jobs if j.index not in region_chunks]
    step = max(1, len(others) // max(1, count - len(chosen)))
    chosen += others[::step][: max(0, count - len(chosen))]
    return chosen


def run_subset(source: Path, output: Path, workers: int, config, chunk: int, region_chunks,
               count: int) -> dict:
    from napari_sci.base.config import StoreConfig
    from napari_sci.store.layout import ChunkGrid
    from napari_sci.store.run import (
        check_in_a_subprocess,
        chunk_jobs,
        dask_client,
        open_or_create,
        run_jobs,
        store_config_for,
    )
    from napari_sci.store.source import describe_source

    shutil.rmtree(output, ignore_errors=True)
    config = store_config_for(config)
    info = describe_source(source)
    grid = ChunkGrid.cubic(info.shape, chunk)
    check_in_a_subprocess(info, grid, config)  # as the CLI does: no torch in this process
    open_or_create(output, info, grid, config)
    jobs = subset_jobs(chunk_jobs(output, info, grid, config), grid, region_chunks, count)
    finished: list[float] = []
    reports = []
    started = time.perf_counter()
    with PeakRss() as rss, dask_client(StoreConfig(chunks=chunk, workers=workers)) as (client, _):
        ready = time.perf_counter()
        for report in run_jobs(client, jobs, 2, lambda j: f"bench-{workers}-{j.index}",
                               lambda r: finished.append(time.perf_counter())):
            reports.append(report)
    finished.sort()
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) * 60 if len(finished) > 1 else math.nan
    return {
        "workers": workers, "chunks": len(jobs), "cluster_start_s": ready - started,
        "wall_s": time.perf_counter() - started,
        "first_chunk_after_s": finished[0] - ready,
        "chunks_per_minute": steady,
        "chunks_per_minute_with_start": len(jobs) / (finished[-1] - started) * 60,
        "peak_rss_bytes": rss.peak, "peak_rss_gib": rss.peak / GiB, "processes_at_peak": rss.peak_processes,
        "peak_pss_gib": rss.peak_pss / GiB,
        "chunk_bytes": int(sum(r.n_bytes for r in reports)),
        "chunk_voxels": int(sum(r.n_voxels for r in reports)),
        "mean_chunk_psnr": float(np.mean([r.psnr for r in reports if math.isfinite(r.psnr)])),
        "indices": sorted(j.index for j in jobs),
    }


def store_bytes(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted((store / "0" / "c").rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def quality(source: Path, store: Path, region: tuple[slice, ...], config_kwargs: dict) -> dict:
    import torch
    import zarr

    import napari_sci
    from napari_sci.core.metrics import evaluate

    torch.set_num_threads(1)
    original = np.asarray(zarr.open_array(str(source), mode="r")[region])
    from_store = napari_sci.open_sci(store)[region]
    started = time.perf_counter()
    single = napari_sci.compress(original, device="cpu", **config_kwargs)
    return {
        "region": [[s.start, s.stop] for s in region],
        "store_psnr_data": evaluate(original, from_store).psnr_data,
        "single_file_psnr_data": single.metrics.psnr_data,
        "single_file_bytes": single.n_bytes, "single_file_bpv": single.bpv,
        "single_file_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/zarr_scale"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/zarr"))
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--bpv", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--subset", type=int, default=40, help="chunks fitted per worker count")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    from napari_sci.base.config import compress_config

    source = args.work / "ct_tiled.zarr"
    shape, build_s = build_input(source, args.chunks)
    config_kwargs = {"bpv": args.bpv, "steps": args.steps, "seed": 0}
    config = compress_config(**config_kwargs)
    c = args.chunks
    corner = tuple((n // 2) // c * c for n in shape)  # a 2×2×2-chunk region in the middle
    region = tuple(slice(a, a + 2 * c) for a in corner)
    first = [a // c for a in corner]
    region_chunks = {(first[0] + i, first[1] + j, first[2] + k)
                     for i in (0, 1) for j in (0, 1) for k in (0, 1)}
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": os.getloadavg()},
        "input": {"shape": list(shape), "dtype": "uint16", "bytes": int(np.prod(shape)) * 2,
                  "gib": int(np.prod(shape)) * 2 / GiB, "built_s": build_s,
                  "from": f"ct_aorta_totalseg.tif tiled {'×'.join(map(str, TILES))}, every other copy "
                          "mirrored, cropped to whole chunks"},
        "settings": {"chunks": c, "bpv": args.bpv, "steps": args.steps, "subset": args.subset},
        "runs": [],
    }
    stores = {}
    for workers in (1, 2):
        stores[workers] = args.work / f"out_{workers}w.sci.zarr"
        load = os.getloadavg()[0]
        run = run_subset(source, stores[workers], workers, config, c, region_chunks, args.subset)
        run["load_1min_before_after"] = [load, os.getloadavg()[0]]
        result["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "indices"}), flush=True)
    one, two = (store_bytes(stores[w]) for w in (1, 2))
    result["byte_identical_1_vs_2_workers"] = one == two and len(one) == args.subset
    rates = [run["chunks_per_minute"] for run in result["runs"]]
    result["speedup_2_over_1"] = rates[1] / rates[0]
    result["quality"] = quality(source, stores[2], region, config_kwargs)
    result["machine"]["load_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
