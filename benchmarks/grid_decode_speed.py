"""Slice decode times of a .sci file through the lazy array (cold: fresh array; warm: cached tiles).

    python benchmarks/grid_decode_speed.py runs/ct_aorta_totalseg_grid_0.1.sci \
        --out benchmarks/results/grid/decode_ct.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import napari_sci


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sci")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    array = napari_sci.open_sci(args.sci)
    planes = [array.shape[0] // 4, array.shape[0] // 2, 3 * array.shape[0] // 4]
    cold, warm = [], []
    for z in planes:
        fresh = napari_sci.open_sci(args.sci)
        started = time.perf_counter()
        fresh[z]
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        fresh[z + 1]  # same tiles, latents already decoded
        warm.append(time.perf_counter() - started)
    started = time.perf_counter()
    whole = array[...]
    full = time.perf_counter() - started
    record = {"file": args.sci, "shape": list(array.shape), "plane_shape": list(whole.shape[1:]),
              "cold_plane_s": cold, "warm_plane_s": warm, "whole_volume_s": full,
              "median_cold_ms": 1000 * float(np.median(cold)),
              "median_warm_ms": 1000 * float(np.median(warm))}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
