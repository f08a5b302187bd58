"""Where a latent-grid training step spends its time (torch profiler, CPU), on a real volume's tiles.

    OMP_NUM_THREADS=2 python benchmarks/grid_step_profile.py ../shared/data/ct_aorta_totalseg.tif \
        --out benchmarks/results/grid/step_profile_ct.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grid_step_speed import trainer_for  # type: ignore[import-not-found]  (benchmarks/ is on the path)
from napari_sci.base.config import GridConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("volume")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    config = GridConfig()
    trainer, n_tiles = trainer_for(args.volume, config)
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.step(1e-2, "noise", 1e-2)
    per_step = (time.perf_counter() - started) / args.steps
    with torch.profiler.profile() as profile:
        trainer.step(1e-2, "noise", 1e-2)
    table = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in table)
    top = sorted(table, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    record = {"volume": args.volume, "tiles": n_tiles, "voxels": trainer.n_voxels,
              "latents": trainer.latents.numel(),
              "samples_per_step": config.grid_samples, "seconds_per_step": per_step,
              "top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count}
                          for e in top]}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
