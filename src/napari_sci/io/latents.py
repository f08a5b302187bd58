"""Latent-grid tile payloads (format 3, model 2): scale codes and one ANS stream of integer latents.

Layout (docs/format.md, "Version 3"): one ``u8`` scale code per level (0: the level is all zero and
not coded; else the Laplace scale ``2^(code/16 − 6)``), then the ANS stream as little-endian ``u32``
words. Each coded level uses one fixed zero-mean ``QuantizedLaplace`` on [−LATENT_LIMIT, LATENT_LIMIT],
so decoding allocates nothing per symbol beyond the latents themselves.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_sci.base.grid_geometry import GridLayout, latent_count, level_shape, levels_for
from napari_sci.errors import SciFormatError
from napari_sci.io.laplace_codes import LATENT_LIMIT, SCALE_CODE_ZERO, scale_code_for, scale_of
from napari_sci.io.latent_context import ContextModel
from napari_sci.io.loop_filter import LoopFilter, pack_shared, unpack_shared
from napari_sci.io.residual import SECTION_BYTES as RESIDUAL_SECTION_BYTES
from napari_sci.io.residual import ResidualModel

__all__ = ["LATENT_LIMIT", "SCALE_CODE_ZERO", "scale_code_for", "scale_of"]


def _laplace(code: int):  # type: ignore[no-untyped-def]
    import constriction

    return constriction.stream.model.QuantizedLaplace(-LATENT_LIMIT, LATENT_LIMIT, 0.0, scale_of(code))


def encode_tile(latents: Sequence[np.ndarray], scale_codes: Sequence[int]) -> bytes:
    """A tile payload from its integer latents (level 0 first) and one scale code per level."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    codes = []
    for grid, code in reversed(list(zip(latents, scale_codes))):  # a stack: last level first
        symbols = np.clip(np.asarray(grid).reshape(-1), -LATENT_LIMIT, LATENT_LIMIT).astype(np.int32)
        if not symbols.any():
            codes.append(SCALE_CODE_ZERO)
            continue
        code = int(np.clip(code, 1, 255))
        coder.encode_reverse(symbols, _laplace(code))
        codes.append(code)
    return bytes(reversed(codes)) + coder.get_compressed().astype("<u4").tobytes()


def decode_tile(payload: bytes, tile_shape: Sequence[int], levels: int) -> list[np.ndarray]:
    """A tile's integer latents, level 0 first; a malformed payload raises ``SciFormatError``."""
    import constriction

    n_levels = levels_for(tile_shape, levels)
    if len(payload) < n_levels or (len(payload) - n_levels) % 4:
        raise SciFormatError(f"latent-grid tile payload of {len(payload)} bytes is malformed")
    words = np.frombuffer(payload, dtype="<u4", offset=n_levels).astype(np.uint32)
    grids = []
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        for level, code in enumerate(payload[:n_levels]):
            shape = level_shape(tile_shape, level)
            if code == SCALE_CODE_ZERO:
                grids.append(np.zeros(shape, dtype=np.int32))
            else:
                count = math.prod(shape)
                grids.append(coder.decode(_laplace(code), count).astype(np.int32).reshape(shape))
    except (ValueError, RuntimeError, OverflowError) as error:
        raise SciFormatError(f"latent-grid tile payload cannot be decoded: {error}") from error
    return grids


GRID_SECTION = struct.Struct("<BBBff")  # levels, hidden, synth_layers, lambda, latent_step; synthesis
LATENT_STEP_RANGE = (2.0 ** -8, 2.0 ** 8)


@dataclass(frozen=True)
class GridSection:
    """The latent-grid model section of a version 3 header: layout, λ and the coded synthesis."""

    layout: GridLayout
    lam: float
    synthesis: bytes
    latent_step: float = 1.0
    context: ContextModel | None = None  # models 3 and 4: the latents' context entropy model
    residual: ResidualModel | None = None  # models 7–14: the residual layer's step and codes
    filtered: bool = False  # models 13 and 14: tiles carry a loop filter choice, the section a shared one
    shared_filter: LoopFilter | None = None

    def pack(self) -> bytes:
        fixed = GRID_SECTION.pack(self.layout.levels, self.layout.hidden, self.layout.layers, self.lam,
                                  self.latent_step)
        return (fixed + (self.context.pack() if self.context is not None else b"")
                + (self.residual.pack() if self.residual is not None else b"")
                + (pack_shared(self.shared_filter) if self.filtered else b"") + self.synthesis)


def synthesis_length_ok(length: int, layout: GridLayout) -> bool:
    """A version 2 network payload of the synthesis: its codes, whole u32 words, ≤ 32 bits a parameter."""
    codes = 2 * len(layout.tensor_sizes())
    return codes + 4 <= length <= codes + 4 * layout.params() + 64 and (length - codes) % 4 == 0


def unpack_grid_section(data: bytes, context: bool = False, mean: bool = False,
                        upsampling: str = "linear", residual: int = 0, filtered: bool = False,
                        ) -> GridSection:
    """Parse and validate a model 2 section (``context``: model 3's, with a context model after the
    fixed fields; ``mean`` too: model 4's, whose context model has mean weights); anything out of
    range is a ``SciFormatError``."""
    if len(data) < GRID_SECTION.size:
        raise SciFormatError(f"latent-grid model section of {len(data)} bytes is too short")
    levels, hidden, layers, lam, step = GRID_SECTION.unpack_from(data, 0)
    if not (1 <= levels <= 16 and hidden >= 1 and 2 <= layers <= 8):
        raise SciFormatError(f"latent-grid layout levels={levels} hidden={hidden} layers={layers} "
                             "is out of range (levels 1–16, hidden ≥ 1, layers 2–8)")
    if not (math.isfinite(lam) and lam >= 0):
        raise SciFormatError(f"latent-grid lambda {lam} must be finite and ≥ 0")
    if not (math.isfinite(step) and LATENT_STEP_RANGE[0] <= step <= LATENT_STEP_RANGE[1]):
        raise SciFormatError(f"latent step {step} is outside [2^-8, 2^8]")
    layout = GridLayout(levels, hidden, layers, upsampling)
    start = GRID_SECTION.size + (ContextModel.packed_size(levels, mean) if context else 0)
    if len(data) < start:
        raise SciFormatError(f"latent-grid model section of {len(data)} bytes has no room for its "
                             f"{levels}-level context model")
    model = ContextModel.unpack(bytes(data[GRID_SECTION.size:start]), levels, mean) if context else None
    residual_model = None
    if residual:  # the residual layer's coding: 1 (models 7 and 8), 2 (models 9 and 10) or 3 (11 and 12)
        size = RESIDUAL_SECTION_BYTES[residual]
        if len(data) < start + size:
            raise SciFormatError(f"latent-grid model section of {len(data)} bytes has no room for its "
                                 "residual model")
        residual_model = ResidualModel.unpack(bytes(data[start:start + size]), residual)
        start += size
    shared = None
    if filtered:  # models 13 and 14: the shared loop filter
        shared, size = unpack_shared(bytes(data[start:]))
        start += size
    synthesis = bytes(data[start:])
    if not synthesis_length_ok(len(synthesis), layout):
        raise SciFormatError(f"latent-grid synthesis payload of {len(synthesis)} bytes does not fit "
                             f"{layout.params()} parameters")
    return GridSection(layout, float(lam), synthesis, float(step), model, residual_model, filtered, shared)


def tile_length_ok(length: int, tile_shape: Sequence[int], levels: int) -> bool:
    """A kind 3 payload: one code per level, whole u32 words, at most 32 bits a latent."""
    n = levels_for(tile_shape, levels)
    return n <= length <= n + 4 + 4 * latent_count(tile_shape, levels) and (length - n) % 4 == 0


def residual_stream_ok(length: int, tile_shape: Sequence[int]) -> bool:
    """A model 7–12 tile's residual stream: whole u32 words, at most 32 bits a coefficient and two
    flags (a block's and, models 9 to 12, a band's: at most as many as coefficients)."""
    return length % 4 == 0 and length <= 4 + 12 * math.prod(tile_shape)
