"""Seconds per latent-grid training step, eager and compiled, interleaved in one process (CPU).

    OMP_NUM_THREADS=2 python benchmarks/grid_step_speed.py ../shared/data/ct_aorta_totalseg.tif \
        --out benchmarks/results/grid/step_speed_ct.json [--upsampling bspline]

The per-tile step of the previous round is not in the tree any more; its figure (5.2 s a step on the
CT, same machine and load) was taken with the same script against that commit (f9141c5).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_sci.base.config import GridConfig, PartitionConfig, compress_config
from napari_sci.base.volume import normalised_volume, value_range
from napari_sci.core.grid_encode import layout_of
from napari_sci.core.partition import partition_volume
from napari_sci.models.grid_fit import GridTrainer


def trainer_for(path: str, config: GridConfig | None = None) -> tuple[GridTrainer, int]:
    """A trainer on a development volume's tiles as ``compress --model grid --bpv 0.1`` cuts them (2
    torch threads), with one step taken; and the tile count."""
    torch.set_num_threads(2)
    volume = tifffile.imread(path)
    x = normalised_volume(volume, value_range(volume)).astype(np.float32)
    config = config or GridConfig()
    tiles = partition_volume(x, PartitionConfig(), min(config.max_tiles, x.size >> 15)).blocks
    layout = layout_of(compress_config(bpv=0.1, upsampling=config.upsampling))
    trainer = GridTrainer(x, [b.slices for b in tiles], layout, config, 0, torch.device("cpu"))
    trainer.step(1e-2, "noise", 1e-2)
    return trainer, len(tiles)


def _seconds_per_step(trainer: GridTrainer, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        trainer.step(1e-2, "noise", 1e-2)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("volume")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--upsampling", default="linear")
    args = parser.parse_args()
    config = GridConfig(upsampling=args.upsampling)
    trainer, n_tiles = trainer_for(args.volume, config)
    load = [os.getloadavg()[0]]
    started = time.perf_counter()
    trainer.enable_compile()
    trainer.step(1e-2, "noise", 1e-2)
    compile_seconds = time.perf_counter() - started
    compiled = trainer._compiled
    rows = []
    for _ in range(args.rounds):
        for mode in ("eager", "compiled"):
            trainer._compiled = compiled if mode == "compiled" else None
            rows.append({"mode": mode, "seconds_per_step": _seconds_per_step(trainer, args.steps)})
    load.append(os.getloadavg()[0])
    record = {"volume": args.volume, "upsampling": args.upsampling, "tiles": n_tiles,
              "voxels": trainer.n_voxels,
              "latents": trainer.latents.numel(), "samples_per_step": config.grid_samples,
              "compile_seconds_with_one_step": compile_seconds, "compile_error": trainer.compile_error,
              "load_average_before_after": load, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
