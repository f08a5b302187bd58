"""Slice latency of a ``.sci.zarr`` store at every pyramid level, cold and warm, written as JSON.

    OMP_NUM_THREADS=1 python benchmarks/store_slice_latency.py --work /tmp/slice_latency \\
        --out benchmarks/results/zarr/slice_latency.json

Fits the CT development volume (164×126×120) into a store of 64³ chunks (0.25 BPV, SIREN at 40 steps
a chunk, the latent-grid model at 5: its steps are slower and the latency does not depend on them)
unless it exists, then reads planes along the first axis
at each level: the first read of a plane (chunks parsed, networks built) and the reads of the
neighbouring planes after it (warm). Issue 14 asks for at most 100 ms warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build(work: Path, model: str, steps: int) -> Path:
    from napari_sci.base.config import StoreConfig, compress_config
    from napari_sci.store.run import compress_store

    out = work / f"ct_{model}.sci.zarr"
    if not out.exists():
        config = compress_config(bpv=0.25, steps=steps, model=model, seed=0)
        compress_store(DATA / "ct_aorta_totalseg.tif", out, config, StoreConfig(chunks=64, workers=0))
    return out


def latencies(store: Path, planes: int) -> list[dict]:
    from napari_sci.store.multiscale import open_store

    rows = []
    for level, array in enumerate(open_store(store).levels):
        middle = array.shape[0] // 2
        started = time.perf_counter()
        array[middle]
        cold = time.perf_counter() - started
        warm = []
        for k in range(1, planes + 1):
            plane = min(array.shape[0] - 1, middle + (k + 1) // 2 * (-1) ** k)
            started = time.perf_counter()
            array[plane]
            warm.append(time.perf_counter() - started)
        rows.append({"level": level, "shape": list(array.shape), "cold_ms": round(cold * 1e3, 1),
                     "warm_median_ms": round(statistics.median(warm) * 1e3, 1),
                     "warm_max_ms": round(max(warm) * 1e3, 1), "warm_planes": len(warm)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/slice_latency"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/zarr/slice_latency.json"))
    p.add_argument("--steps", type=int, default=40, help="SIREN steps a chunk")
    p.add_argument("--grid-steps", type=int, default=5, help="latent-grid steps a chunk")
    p.add_argument("--planes", type=int, default=8)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_before": os.getloadavg()},
              "settings": {"chunks": 64, "bpv": 0.25, "steps": args.steps, "grid_steps": args.grid_steps,
                           "planes": args.planes},
              "stores": {}}
    for model, steps in (("siren", args.steps), ("grid", args.grid_steps)):
        store = build(args.work, model, steps)
        result["stores"][model] = latencies(store, args.planes)
        for row in result["stores"][model]:
            print(model, row, flush=True)
    result["machine"]["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
