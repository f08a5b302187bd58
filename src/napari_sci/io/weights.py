"""Network payloads: raw float32 (format v1) or quantised and entropy coded (format v2).

v2 quantises every tensor (each layer's W and b) uniformly with its own step and codes the integer
symbols with an ANS coder (``constriction``) under a zero-mean quantised Gaussian model whose width is
stored with the tensor. Trained SIREN weights are close to Gaussian/uniform (kurtosis 1.8–3), so this
model codes within a few percent of their empirical entropy. Layout of a v2 payload (docs/format.md):

    per tensor, in file order (W₁, b₁, W₂, b₂, …): u8 step_code, u8 width_code
    then the ANS stream as little-endian u32 words

step = 2^(step_code/16 − 16), model std in symbols = 2^(width_code/16 − 4); symbols are clamped to
±SYMBOL_LIMIT (the encoder never needs to: its steps are at least max|w|/SYMBOL_LIMIT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_sci.errors import SciFormatError

SYMBOL_LIMIT = 4095
CODE_BYTES_PER_TENSOR = 2


@dataclass(frozen=True)
class TensorCode:
    """How one tensor is quantised (step) and modelled (symbol std), as two byte codes."""

    step_code: int
    width_code: int

    @property
    def step(self) -> float:
        return 2.0 ** (self.step_code / 16 - 16)

    @property
    def width(self) -> float:
        return 2.0 ** (self.width_code / 16 - 4)


def step_code_for(step: float) -> int:
    """The code of the largest representable step not above ``step`` (clamped to the code range)."""
    if not step > 0:
        return 0
    return int(np.clip(math.floor(16 * (math.log2(step) + 16) + 1e-9), 0, 255))


def width_code_for(symbols: np.ndarray) -> int:
    """Code of the Gaussian width that fits the symbols (their RMS, at least one symbol)."""
    rms = float(np.sqrt(np.mean(np.square(symbols, dtype=np.float64)))) if symbols.size else 1.0
    return int(np.clip(round(16 * (math.log2(max(rms, 0.25)) + 4)), 0, 255))


def tensor_sizes(dims: Sequence[tuple[int, int]]) -> list[int]:
    """Element counts of W₁, b₁, W₂, b₂, … for layers of (in, out)."""
    return [n for fan_in, fan_out in dims for n in (fan_in * fan_out, fan_out)]


def split_tensors(flat: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [flat[bounds[i]: bounds[i + 1]] for i in range(len(sizes))]


def quantise(values: np.ndarray, code: TensorCode) -> np.ndarray:
    return np.clip(np.rint(values / code.step), -SYMBOL_LIMIT, SYMBOL_LIMIT).astype(np.int32)


def _model(code: TensorCode):  # type: ignore[no-untyped-def]
    import constriction

    return constriction.stream.model.QuantizedGaussian(-SYMBOL_LIMIT, SYMBOL_LIMIT, 0.0, code.width)


def encode_payload(flat: np.ndarray, sizes: Sequence[int], codes: Sequence[TensorCode]) -> bytes:
    """Quantise and entropy code one network's parameters (file order) into a v2 payload."""
    import constriction

    tensors = split_tensors(np.asarray(flat, dtype=np.float64), sizes)
    coder = constriction.stream.stack.AnsCoder()
    for values, code in reversed(list(zip(tensors, codes))):  # ANS is a stack: encode in reverse
        coder.encode_reverse(quantise(values, code), _model(code))
    header = bytes(b for code in codes for b in (code.step_code, code.width_code))
    return header + coder.get_compressed().astype("<u4").tobytes()


def dequantised(flat: np.ndarray, sizes: Sequence[int], codes: Sequence[TensorCode]) -> np.ndarray:
    """The float32 values a decoder will see for ``flat`` under ``codes``."""
    tensors = split_tensors(np.asarray(flat, dtype=np.float64), sizes)
    return np.concatenate([quantise(t, c) * c.step for t, c in zip(tensors, codes)]).astype(np.float32)


def ans_stream_ok(payload: bytes, offset: int) -> bool:
    """The ANS stream after ``offset`` is whole u32 words and, if not empty, does not end in a zero word
    (the coder never writes one; such a payload would only fail later, when decoded)."""
    tail = len(payload) - offset
    if tail < 0 or tail % 4:
        return False
    return tail == 0 or payload[-4:] != b"\0\0\0\0"


def decode_payload(payload: bytes, sizes: Sequence[int]) -> np.ndarray:
    """A v2 payload back to float32 parameters; malformed payloads raise ``SciFormatError``."""
    import constriction

    n_codes = CODE_BYTES_PER_TENSOR * len(sizes)
    if len(payload) < n_codes or (len(payload) - n_codes) % 4:
        raise SciFormatError(f"v2 payload of {len(payload)} bytes is malformed")
    codes = [TensorCode(payload[i], payload[i + 1]) for i in range(0, n_codes, 2)]
    words = np.frombuffer(payload, dtype="<u4", offset=n_codes).astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        parts = [coder.decode(_model(code), size).astype(np.float64) * code.step
                 for code, size in zip(codes, sizes)]
    except (ValueError, RuntimeError, OverflowError) as error:
        raise SciFormatError(f"v2 payload cannot be decoded: {error}") from error
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
