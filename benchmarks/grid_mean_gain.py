"""What predicted means save, measured exactly: a fitted file's latents coded as model 3 and model 4.

    python benchmarks/grid_mean_gain.py runs/mri_t1_colin27_grid_0.1.sci [more.sci …]

The latents of every tile are read back and coded twice with the real coder: with the file's slopes
refined on these latents (model 3, zero-mean Laplaces) and with mean weights chosen as the encoder
chooses them (model 4: the file's own weights if it has them, a least-absolute-deviation fit, or zero,
per level, then the slopes refined). Both are payload bytes of the same latents, so their ratio is what
the mean prediction saves on this file, side information (4 bytes a level) included.
"""

from __future__ import annotations

import sys

import napari_sci
from napari_sci.io.latent_context import ContextModel, encode_tile, refine_context_model


def coded_bytes(path: str) -> tuple[int, int, int]:
    """(model 3 bytes, model 4 bytes, levels) of the file's tile latents."""
    models = napari_sci.open_sci(path)._decoder.models
    tiles = [models.latents(i) for i, payload in enumerate(models.payloads) if payload]
    stored = models.context
    levels = models.layout.levels
    start3 = ContextModel(stored.first, stored.near, stored.coarse) if stored else ContextModel.zeros(levels)
    start4 = stored if stored is not None and stored.mean is not None else ContextModel(
        start3.first, start3.near, start3.coarse, ContextModel.zeros(levels, mean=True).mean)
    model3 = refine_context_model(tiles, start3)
    model4 = refine_context_model(tiles, start4)
    bytes3 = sum(len(encode_tile(t, model3)) for t in tiles)
    bytes4 = sum(len(encode_tile(t, model4)) for t in tiles) + 4 * levels
    return bytes3, bytes4, levels


def main(paths: list[str]) -> None:
    for path in paths:
        bytes3, bytes4, _ = coded_bytes(path)
        print(f"{path}: model 3 {bytes3:,} B, model 4 {bytes4:,} B ({100 * (bytes4 / bytes3 - 1):+.1f} %)")


if __name__ == "__main__":
    main(sys.argv[1:])
