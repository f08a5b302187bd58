"""npe2 writer: File ▸ Save an image layer as ``.sci`` with documented default settings.

napari calls writers synchronously, so the defaults keep a save short (a time limit caps the fit); the
compress widget offers every setting and runs in the background.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from napari_sci.base.config import CodingConfig, CompressConfig, FitConfig, compress_config
from napari_sci.core.codec import encode


@dataclass(frozen=True)
class WriterDefaults:
    """Settings of File ▸ Save (docs/usage.md lists them): 0.1 bits per voxel, at most 1000 steps or
    2 min (shorter than the codec's defaults: napari waits for a writer); device and format are the
    codec's defaults (auto; format 2, quantised, entropy-coded weights)."""

    bpv: float = 0.1
    steps: int = 1000
    time_limit: float = 120.0
    device: str = FitConfig.device
    format: int = CodingConfig.format_version

    def config(self) -> CompressConfig:
        return compress_config(**asdict(self))


def _spacing(meta: dict[str, Any], ndim: int) -> tuple[float, ...] | None:
    scale = meta.get("scale")
    if scale is None or len(scale) != ndim:
        return None
    return tuple(float(s) for s in scale)


DEFAULTS = WriterDefaults()


def write_sci(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Compress one image layer to ``path`` with :data:`DEFAULTS`, atomically (napari's save dialog
    has already confirmed any overwrite)."""
    # encode checks the layout before it reads a lazy layer into memory (check_volume)
    result = encode(data, DEFAULTS.config(), spacing=_spacing(meta, data.ndim))
    result.write(path, overwrite=True)
    return [path]
