"""The codecs under test, by name; heavy libraries load only when a codec runs."""

from __future__ import annotations

from napari_sci.bench.codecs.base import Codec, Compressed, KnobCodec, Target
from napari_sci.bench.codecs.images import Jpeg2000Codec, JpegCodec, JpegXlCodec
from napari_sci.bench.codecs.inr import GridCodec, NerfCodec, SciCodec, SciV1Codec, SirenCodec
from napari_sci.bench.codecs.scientific import SperrCodec, Sz3Codec, ZfpCodec
from napari_sci.bench.codecs.video import H264Codec, HevcCodec
from napari_sci.bench.settings import BenchSettings

CODECS: dict[str, type[Codec]] = {cls.name: cls for cls in (
    SciCodec, SciV1Codec, SirenCodec, GridCodec, NerfCodec, HevcCodec, H264Codec, JpegCodec, Jpeg2000Codec,
    JpegXlCodec,
    ZfpCodec, Sz3Codec, SperrCodec)}

__all__ = ["CODECS", "Codec", "Compressed", "KnobCodec", "Target", "make_codec"]


def make_codec(name: str, settings: BenchSettings) -> Codec:
    """The codec called ``name``, set up with the run's settings."""
    return CODECS[name](settings)
