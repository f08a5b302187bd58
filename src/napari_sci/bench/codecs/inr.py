"""The implicit neural codecs: ``sci`` (napari-sci), ``siren`` (one plain SIREN) and ``nerf``.

All three take the byte budget directly (no search) and train with the same steps, time limit,
device, seed, optimiser and learning-rate schedule (the core's :class:`FitConfig`).

- ``sci``: :func:`napari_sci.core.codec.encode` with the paper's model (adaptive ILP partition,
  funnel SIRENs of ratio 2.2, ``size-over-d`` allocation, format 2); the ``.sci`` file is the output.
- ``siren``: the same codec with ``method="none"`` (one block: the whole volume) and ``fr=1.0`` (all
  hidden layers the same width), i.e. a plain SIREN in a ``.sci`` file.
- ``grid``: the latent-grid model (format 3, the codec's default since session 25), one λ for
  all tiles; ``steps``/``time_limit`` bound its fit like the others'.
- ``nerf``: :mod:`napari_sci.bench.nerf`.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from napari_sci.bench.codecs.base import Codec, Compressed, Target
from napari_sci.bench.search import TrialCache


def _missing_torch() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError as error:
        return f"torch cannot be imported: {error}"
    return None


class SciCodec(Codec):
    name = "sci"
    summary = "napari-sci: adaptive ILP partition, funnel SIRENs (fr 2.2), size-over-d allocation"
    overrides: ClassVar[dict[str, Any]] = {"model": "siren"}

    def missing(self) -> str | None:
        return _missing_torch()

    def compress(self, volume: np.ndarray, target: Target, cache: TrialCache | None = None) -> Compressed:
        from napari_sci.base.config import compress_config
        from napari_sci.core.codec import encode

        s = self.settings
        config = compress_config(bpv=target.bpv, steps=s.steps, time_limit=s.time_limit,
                                 device=s.device, seed=s.seed, samples_per_block=s.samples,
                                 **self.overrides)
        started = time.perf_counter()
        result = encode(volume, config)
        seconds = time.perf_counter() - started
        networks = sum(not n.is_constant for n in result.networks)
        notes = (f"{len(result.partition.blocks)} blocks, {networks} networks, {result.n_params} "
                 f"parameters, {result.contents.header.steps} of {s.steps} steps",
                 "compress seconds include the core's own decode + evaluation pass")
        return Compressed(result.data, "bpv_budget", target.bpv, seconds, notes=notes)

    def decompress(self, blob: bytes) -> np.ndarray:
        from napari_sci.core.decoder import decode_contents
        from napari_sci.io.container import parse

        return decode_contents(parse(blob))


class SciV1Codec(SciCodec):
    name = "sci-v1"
    summary = "napari-sci with float32 weights (format 1, as the paper stores them)"
    overrides: ClassVar[dict[str, Any]] = {"model": "siren", "format": 1}


class SirenCodec(SciCodec):
    name = "siren"
    summary = "one plain SIREN over the whole volume (napari-sci with method none, fr 1.0)"
    overrides: ClassVar[dict[str, Any]] = {"model": "siren", "method": "none", "fr": 1.0}


class GridCodec(SciCodec):
    name = "grid"
    summary = ("napari-sci's latent grids: adaptive tiles, quantised context-coded latent pyramids, "
               "one synthesis MLP, trained for rate and distortion (format 3)")
    overrides: ClassVar[dict[str, Any]] = {"model": "grid"}


class NerfCodec(Codec):
    name = "nerf"
    summary = ("NeRF-style MLP: positional encoding (6 frequencies) + 7 ReLU/linear layers, "
               "float32 weights")

    def missing(self) -> str | None:
        return _missing_torch()

    def compress(self, volume: np.ndarray, target: Target, cache: TrialCache | None = None) -> Compressed:
        from napari_sci.base.config import FitConfig
        from napari_sci.bench.nerf import nerf_encode

        s = self.settings
        fit = FitConfig(steps=s.steps, time_limit=s.time_limit, seed=s.seed, device=s.device)
        started = time.perf_counter()
        blob, spec, steps = nerf_encode(volume, target.bytes, fit, s.batch)
        seconds = time.perf_counter() - started
        notes = (f"width {spec.width}, {spec.params} parameters, {steps} of {s.steps} steps, "
                 f"batch {s.batch}",)
        return Compressed(blob, "width", float(spec.width), seconds, notes=notes)

    def decompress(self, blob: bytes) -> np.ndarray:
        from napari_sci.bench.nerf import nerf_decode

        return nerf_decode(blob)
