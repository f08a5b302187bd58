"""Where a latent-grid file keeps its bits: per level, the latents, the non-zero ones and their share of
the coded bits (ideal code lengths under each tile level's stored Laplace scale).

    python benchmarks/grid_levels.py runs/mri_t1_colin27_grid_0.1.sci [more.sci …]

This is how the empty full-resolution level of the smooth volumes was found (docs/benchmarks.md §7).
"""

from __future__ import annotations

import sys

import numpy as np

import napari_sci
from napari_sci.io.latents import scale_of
from napari_sci.models.grid_quant import best_scale_code, laplace_bits_np


def level_table(path: str) -> list[tuple[int, int, float]]:
    """(latents, non-zero latents, bits) per level, summed over the file's grid tiles."""
    models = napari_sci.open_sci(path)._decoder.models
    rows: list[list[float]] = []
    for index, payload in enumerate(models.payloads):
        if not payload:
            continue
        for level, grid in enumerate(models.latents(index)):
            while len(rows) <= level:
                rows.append([0, 0, 0.0])
            code = best_scale_code(grid.reshape(-1))
            rows[level][0] += grid.size
            rows[level][1] += int(np.count_nonzero(grid))
            rows[level][2] += laplace_bits_np(grid.reshape(-1), scale_of(code)) if code else 0.0
    return [(int(n), int(k), float(b)) for n, k, b in rows]


def main(paths: list[str]) -> None:
    for path in paths:
        rows = level_table(path)
        total = sum(b for _, _, b in rows) or 1.0
        print(path)
        for level, (n, k, b) in enumerate(rows):
            print(f"  level {level}: {n:>10,} latents, {k:>9,} non-zero ({100 * k / max(n, 1):5.2f} %), "
                  f"{100 * b / total:5.1f} % of the bits")


if __name__ == "__main__":
    main(sys.argv[1:])
