"""Still-image codecs from imagecodecs: JPEG (per slice), JPEG 2000 and JPEG XL (one stream each).

- ``jpeg``: libjpeg-turbo, 8-bit baseline, one JFIF stream per z-slice with optimised Huffman
  tables; the payload is the slices' LEB128 lengths followed by the streams. 12-bit JPEG exists but
  its baseline quantisation tables are capped at 255, so it cannot go below ~1 BPV on 16-bit data.
- ``jpeg2000``: OpenJPEG, the z-slices as the components of ONE codestream (no multi-component
  transform), so the header and the rate allocation are shared; the knob is OpenJPEG's fixed-quality
  PSNR target (imagecodecs' ``level``), searched as a real number.
- ``jpegxl``: libjxl, the z-slices as the frames of one codestream; the knob is the Butteraugli
  distance (0.01 to libjxl's maximum 25).

All three get the volume mapped linearly from [min, max] onto the full range of 8 bits (JPEG) or of the
dtype (JPEG 2000, JPEG XL: 8 or 16 bits); OpenJPEG's PSNR target and libjxl's distance assume the
data fills that range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sci.bench.codecs.base import KnobCodec
from napari_sci.bench.search import Knob
from napari_sci.bench.side_header import (
    BenchFormatError,
    SideInfo,
    ValueMap,
    frames_shape,
    read_varint,
    value_map,
    write_varint,
)


def _imagecodecs() -> Any:
    import imagecodecs

    return imagecodecs


def _missing_imagecodecs(feature: str) -> str | None:
    try:
        codecs = _imagecodecs()
    except ImportError:
        return "imagecodecs is not installed (pip install 'napari-sci[bench]')"
    if not getattr(codecs, feature).available:
        return f"imagecodecs {codecs.__version__} was built without {feature}"
    return None


def _native_bits(side: SideInfo) -> int:
    return 8 * side.dtype.itemsize


class JpegCodec(KnobCodec):
    name = "jpeg"
    summary = "libjpeg-turbo baseline 8-bit, one stream per z-slice, optimised Huffman, quality searched"
    knob = Knob("quality", 1, 100, grows=True, integer=True, start=0.3)
    bits = 8

    def missing(self) -> str | None:
        return _missing_imagecodecs("JPEG8")

    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        codecs = _imagecodecs()
        codes = value_map(side, 8).to_codes(volume.reshape(frames_shape(side.shape)), np.uint8)
        streams = [bytes(codecs.jpeg8_encode(plane, level=int(value), optimize=True)) for plane in codes]
        return b"".join(write_varint(len(s)) for s in streams) + b"".join(streams)

    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        codecs = _imagecodecs()
        depth = frames_shape(side.shape)[0]
        offset, lengths = 0, []
        for _ in range(depth):
            length, offset = read_varint(payload, offset)
            lengths.append(length)
        if offset + sum(lengths) != len(payload):
            raise BenchFormatError("JPEG slice lengths do not add up to the payload")
        planes = []
        for length in lengths:
            planes.append(codecs.jpeg8_decode(payload[offset: offset + length]))
            offset += length
        codes = np.stack(planes).reshape(side.shape)
        return value_map(side, 8).from_codes(codes, side.dtype)


class Jpeg2000Codec(KnobCodec):
    name = "jpeg2000"
    summary = ("OpenJPEG, z-slices as components of one codestream (no MCT), fixed-quality PSNR "
               "target searched")
    knob = Knob("psnr_target_db", 1.0, 100.0, grows=True, start=0.25, resolution=0.01)

    def codes_map(self, side: SideInfo) -> ValueMap:
        return value_map(side, _native_bits(side))

    def missing(self) -> str | None:
        return _missing_imagecodecs("JPEG2K")

    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        dtype = np.uint8 if _native_bits(side) == 8 else np.uint16
        codes = self.codes_map(side).to_codes(volume.reshape(frames_shape(side.shape)), dtype)
        return bytes(_imagecodecs().jpeg2k_encode(codes, level=value, codecformat="j2k", planar=True,
                                                  mct=False, numthreads=self.settings.threads or None))

    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        codes = _imagecodecs().jpeg2k_decode(payload, planar=True,
                                             numthreads=self.settings.threads or None)
        return self.codes_map(side).from_codes(np.asarray(codes).reshape(side.shape), side.dtype)


class JpegXlCodec(KnobCodec):
    name = "jpegxl"
    summary = "libjxl, z-slices as frames of one codestream, default effort, distance searched"
    knob = Knob("distance", 0.01, 25.0, grows=False, log=True, start=0.4, resolution=0.002)

    def codes_map(self, side: SideInfo) -> ValueMap:
        return value_map(side, _native_bits(side))

    def missing(self) -> str | None:
        return _missing_imagecodecs("JPEGXL")

    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        dtype = np.uint8 if _native_bits(side) == 8 else np.uint16
        codes = self.codes_map(side).to_codes(volume.reshape(frames_shape(side.shape)), dtype)
        # A trailing channel axis of 1 keeps a narrow last axis from being read as colour samples.
        return bytes(_imagecodecs().jpegxl_encode(codes[..., None], distance=value,
                                                  numthreads=self.settings.threads or None))

    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        codes = _imagecodecs().jpegxl_decode(payload, numthreads=self.settings.threads or None)
        return self.codes_map(side).from_codes(np.asarray(codes).reshape(side.shape), side.dtype)
