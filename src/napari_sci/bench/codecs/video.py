"""HEVC (x265) and H.264 (x264) through FFmpeg: z-slices are the frames of one grayscale video.

Each runs at the highest grayscale bit depth it offers (as the SCI paper: 12-bit HEVC Monochrome 12,
``gray12le``; 10-bit H.264 High 10, ``gray10le``); values are mapped linearly from the volume's
[min, max] onto [0, 2**bits - 1] (``container.ValueMap``). The output is the raw Annex-B elementary
stream (no MP4/MKV container) with the encoders' informational SEI NAL units removed by FFmpeg's
``filter_units`` bitstream filter (x264 writes ~0.5 KB of settings text, x265 ~2 KB); decoding does not
need them. The knob is the constant rate factor, searched as a real number. H.264 4:0:0 decodes as
``yuv420p10le`` in FFmpeg, so the luma plane is taken with ``extractplanes=y`` (a ``-pix_fmt`` conversion
would rescale it as TV range).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import ClassVar

import numpy as np

from napari_sci.bench.codecs.base import KnobCodec
from napari_sci.bench.search import Knob
from napari_sci.bench.side_header import SideInfo, frames_shape, value_map

PRESET = "slow"
TUNE = "psnr"


class FfmpegError(RuntimeError):
    """FFmpeg failed; the message carries its stderr."""


def _run(command: list[str], data: bytes) -> bytes:
    done = subprocess.run(command, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise FfmpegError(f"{' '.join(command[:8])} ... failed: "
                          f"{done.stderr.decode(errors='replace').strip()[-500:]}")
    return done.stdout


class _FfmpegCodec(KnobCodec):
    encoder: ClassVar[str]
    pix_fmt: ClassVar[str]
    stream_format: ClassVar[str]
    sei_types: ClassVar[str]
    decode_filter: ClassVar[tuple[str, ...]] = ()
    encoder_args: ClassVar[tuple[str, ...]] = ()

    @property
    def ffmpeg(self) -> str | None:
        return shutil.which(self.settings.ffmpeg)

    def missing(self) -> str | None:
        if self.ffmpeg is None:
            return f"ffmpeg ({self.settings.ffmpeg}) not found on PATH"
        try:
            probe = SideInfo((2, 16, 16), np.dtype(np.uint8), 0.0, 255.0)
            ramp = (np.arange(512).reshape(2, 16, 16) % 256).astype(np.uint8)
            self.decode_payload(self.encode_payload(ramp, probe, self.knob.at(0.5)), probe)
        except (FfmpegError, OSError, ValueError) as error:
            return f"{self.encoder} with {self.pix_fmt} does not work here: {error}"
        return None

    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        codes = value_map(side, self.bits or 0).to_codes(volume.reshape(frames_shape(side.shape)), "<u2")
        _, height, width = codes.shape
        command = [self.ffmpeg or "ffmpeg", "-nostdin", "-v", "error", "-f", "rawvideo",
                   "-pix_fmt", self.pix_fmt, "-s", f"{width}x{height}", "-r", "25", "-i", "pipe:0",
                   "-c:v", self.encoder, "-preset", PRESET, "-tune", TUNE, "-crf", f"{value:.3f}",
                   *self.encoder_args, "-threads", str(self.settings.threads),
                   "-bsf:v", f"filter_units=remove_types={self.sei_types}",
                   "-f", self.stream_format, "pipe:1"]
        return _run(command, codes.tobytes())

    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        command = [self.ffmpeg or "ffmpeg", "-nostdin", "-v", "error", "-f", self.stream_format,
                   "-i", "pipe:0", *self.decode_filter, "-f", "rawvideo", "-pix_fmt", self.pix_fmt,
                   "pipe:1"]
        raw = np.frombuffer(_run(command, payload), dtype="<u2")
        frames = frames_shape(side.shape)
        if raw.size != int(np.prod(frames)):
            raise FfmpegError(f"decoded {raw.size} samples, expected {int(np.prod(frames))}")
        return value_map(side, self.bits or 0).from_codes(raw.reshape(frames),
                                                          side.dtype).reshape(side.shape)


class HevcCodec(_FfmpegCodec):
    name = "hevc"
    summary = (f"x265 via FFmpeg, 12-bit gray (Main 12 4:0:0), slices as frames, preset {PRESET}, "
               f"tune {TUNE}, CRF searched, SEI removed")
    knob = Knob("crf", 0.0, 51.0, grows=False, start=0.4, resolution=0.05)
    bits = 12
    encoder, pix_fmt, stream_format = "libx265", "gray12le", "hevc"
    sei_types = "39|40"
    encoder_args = ("-x265-params", "log-level=error")


class H264Codec(_FfmpegCodec):
    name = "h264"
    summary = (f"x264 via FFmpeg, 10-bit gray (High 10 4:0:0), slices as frames, preset {PRESET}, "
               f"tune {TUNE}, CRF searched, SEI removed")
    knob = Knob("crf", 0.0, 51.0, grows=False, start=0.4, resolution=0.05)
    bits = 10
    encoder, pix_fmt, stream_format = "libx264", "gray10le", "h264"
    sei_types = "6"
    decode_filter = ("-vf", "extractplanes=y")
