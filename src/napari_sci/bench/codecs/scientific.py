"""Error-bounded scientific floating-point compressors: zfp (fixed rate) and SZ3 (error bound).

- ``zfp``: fixed-rate mode on 32-bit integers, the volume mapped linearly from [min, max] onto
  [0, 2**30 - 1] (exact for these ≤ 16-bit volumes). Integer input avoids the per-block exponent that
  keeps zfp's float mode above ~0.14 BPV in 3D, and measured better PSNR at every rate we tried.
  The knob is the rate in bits per value; zfp's own header (~8 bytes) stays in the stream.
- ``sz3``: the values as float32 (exact for ≤ 24-bit integers), relative error bound
  (bound = rel × (max - min)) searched in log space.
- ``sperr``: SPERR (wavelets + SPECK, Li et al. 2023) on float64 values in its fixed-rate mode; the
  rate it is asked for is searched so that stream and side header meet the byte target (SPERR's own
  3-D header stays in the stream).
"""

from __future__ import annotations

import numpy as np

from napari_sci.base.volume import ValueRange, to_dtype
from napari_sci.bench.codecs.base import KnobCodec
from napari_sci.bench.codecs.images import _imagecodecs, _missing_imagecodecs
from napari_sci.bench.search import Knob
from napari_sci.bench.side_header import SideInfo


class ZfpCodec(KnobCodec):
    name = "zfp"
    summary = "zfp fixed-rate on int32 (values mapped to 30 bits), rate searched"
    knob = Knob("rate_bits_per_value", 0.01, 16.0, grows=True, log=True, start=0.5, resolution=0.003)
    bits = 30

    def missing(self) -> str | None:
        return _missing_imagecodecs("ZFP")

    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        codes = self.codes_map(side).to_codes(volume, np.int32)
        return bytes(_imagecodecs().zfp_encode(codes, level=value, mode="r"))

    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        codes = np.asarray(_imagecodecs().zfp_decode(payload)).reshape(side.shape)
        return self.codes_map(side).from_codes(codes, side.dtype)


class Sz3Codec(KnobCodec):
    name = "sz3"
    summary = "SZ3 on float32 values, relative error bound searched"
    knob = Knob("relative_error_bound", 1e-6, 1.0, grows=False, log=True, start=0.5, resolution=0.002)

    def missing(self) -> str | None:
        return _missing_imagecodecs("SZ3")

    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        values = np.ascontiguousarray(volume, dtype=np.float32)
        return bytes(_imagecodecs().sz3_encode(values, mode="rel", rel=value))

    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        values = _imagecodecs().sz3_decode(payload, shape=side.shape, dtype=np.float32)
        return to_dtype(np.asarray(values, dtype=np.float64), side.dtype,
                        ValueRange(side.low, side.high))


class SperrCodec(KnobCodec):
    name = "sperr"
    summary = "SPERR fixed-rate on float64 values, rate searched"
    knob = Knob("rate_bits_per_value", 0.002, 16.0, grows=True, log=True, start=0.1, resolution=0.003)

    def missing(self) -> str | None:
        return _missing_imagecodecs("SPERR")

    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        values = np.ascontiguousarray(volume, dtype=np.float64)
        return bytes(_imagecodecs().sperr_encode(values, level=value, mode="bpp", header=True))

    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        values = np.asarray(_imagecodecs().sperr_decode(payload), dtype=np.float64).reshape(side.shape)
        return to_dtype(values, side.dtype, ValueRange(side.low, side.high))
