"""How many latent bits would a cross-level context save? An estimate on a fitted grid-model file.

    python benchmarks/grid_context_gain.py runs/mri_t1_colin27_grid_0.1.sci

For each tile level below the coarsest, the rounded latents are costed (a) under one zero-mean Laplace
at the maximum-likelihood scale (what the file's factorised model does, up to its scale codes) and
(b) under a Laplace whose scale depends on the upsampled coarser level at the same place (8 quantile
bins of its magnitude, one scale per bin, side information ignored). Both are ideal code lengths, so
only their ratio is meaningful: the share a decoder-parallel context (coarse to fine) could save.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import laplace

import napari_sci
from napari_sci.models.grid import interpolate_box


def laplace_bits(values: np.ndarray) -> float:
    x = np.abs(values.astype(np.float64))
    scale = max(float(x.mean()), 1e-2)
    p = laplace.cdf(x + 0.5, scale=scale) - laplace.cdf(x - 0.5, scale=scale)
    return float(-np.log2(np.maximum(p, 1e-15)).sum())


def main(path: str) -> None:
    models = napari_sci.open_sci(path)._decoder.models
    factorised = contextual = 0.0
    for index, payload in enumerate(models.payloads):
        if not payload:
            continue
        grids = models.latents(index)
        for level in range(len(grids) - 1):
            fine, coarse = grids[level].astype(np.float64), grids[level + 1]
            if not fine.any():
                continue
            # the coarser level seen from this one is "level 1" of a tile of the fine grid's shape
            context = np.abs(interpolate_box(coarse, 1, fine.shape, tuple((0, s) for s in fine.shape)))
            bins = np.digitize(context.ravel(), np.quantile(context, np.linspace(0, 1, 9)[1:-1]))
            factorised += laplace_bits(fine)
            contextual += sum(laplace_bits(fine.ravel()[bins == b]) for b in np.unique(bins))
    print(f"{path}: factorised {factorised / 8:,.0f} B, with a coarser-level context "
          f"{contextual / 8:,.0f} B, saving {100 * (1 - contextual / max(factorised, 1)):.1f} %")


if __name__ == "__main__":
    main(sys.argv[1])
