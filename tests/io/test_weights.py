import math

import numpy as np
import pytest

from napari_sci.errors import SciFormatError
from napari_sci.io.weights import (
    SYMBOL_LIMIT,
    TensorCode,
    decode_payload,
    dequantised,
    encode_payload,
    step_code_for,
    width_code_for,
)


def test_code_arithmetic():
    assert TensorCode(255, 0).step < 1.0
    for step in (1e-4, 3e-3, 0.02, 0.5):
        code = step_code_for(step)
        assert TensorCode(code, 0).step <= step < TensorCode(code + 1, 0).step
    assert TensorCode(0, 64).width == pytest.approx(1.0)


def test_round_trip_is_exact_on_the_quantisation_grid():
    rng = np.random.default_rng(0)
    sizes = [30, 10, 100, 10, 10, 1]
    flat = rng.normal(0, 0.05, sum(sizes)).astype(np.float32)
    codes = [TensorCode(step_code_for(0.004), width_code_for(np.rint(t / 0.004)))
             for t in np.split(flat, np.cumsum(sizes)[:-1])]
    payload = encode_payload(flat, sizes, codes)
    decoded = decode_payload(payload, sizes)
    np.testing.assert_array_equal(decoded, dequantised(flat, sizes, codes))
    assert np.abs(decoded - flat).max() <= codes[0].step / 2 + 1e-7


def test_coded_size_is_near_the_entropy():
    rng = np.random.default_rng(1)
    n = 20_000
    flat = rng.normal(0, 1.0, n).astype(np.float32)
    code = TensorCode(step_code_for(1 / 16), 0)
    code = TensorCode(code.step_code, width_code_for(np.rint(flat / code.step)))
    payload = encode_payload(flat, [n], [code])
    sigma = 1.0 / code.step
    entropy = 0.5 * math.log2(2 * math.pi * math.e * sigma**2)
    assert len(payload) * 8 / n < entropy * 1.02


def test_malformed_payloads_are_refused():
    with pytest.raises(SciFormatError):
        decode_payload(b"\x01", [3, 1])
    with pytest.raises(SciFormatError):
        decode_payload(bytes(4) + b"\x00\x00\x00", [3, 1])


def test_symbols_are_bounded():
    flat = np.array([1e6, -1e6], dtype=np.float32)
    codes = [TensorCode(step_code_for(1.0), 64)]
    decoded = decode_payload(encode_payload(flat, [2], codes), [2])
    assert np.abs(decoded).max() <= SYMBOL_LIMIT * codes[0].step
