"""The zarr v3 codec ``napari-sci``: a chunk's bytes are one ``.sci`` file, decoded to the chunk's array.

zarr finds the codec through the ``zarr.codecs`` entry point (pyproject.toml) or through
:func:`register`, which importing this module calls. Decoding validates the whole file (every CRC)
first; encoding through zarr is refused: chunks are fitted by ``napari-sci compress``, not by zarr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.registry import register_codec

from napari_sci.errors import SciError, SciFormatError
from napari_sci.store.layout import CODEC_NAME

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec

CODEC_VERSION = 1


def decode_chunk(data: bytes, chunk_shape: tuple[int, ...], dtype: np.dtype,
                 fill_value: Any = 0) -> np.ndarray:
    """The chunk's voxels: the ``.sci`` file decoded (deblocked), padded with ``fill_value`` to
    ``chunk_shape`` when it is an edge chunk."""
    from napari_sci.core.decoder import decode_contents
    from napari_sci.io.container import parse

    contents = parse(data)
    shape = contents.header.shape
    if contents.header.dtype != np.dtype(dtype):
        raise SciFormatError(f"a chunk holds {contents.header.dtype} voxels but the array is {dtype}")
    if len(shape) != len(chunk_shape) or any(s > c for s, c in zip(shape, chunk_shape)):
        raise SciFormatError(f"a chunk of shape {shape} does not fit the chunk shape {chunk_shape}")
    values = decode_contents(contents)
    if shape == tuple(chunk_shape):
        return values
    out = np.full(chunk_shape, fill_value, dtype=values.dtype)
    out[tuple(slice(0, s) for s in shape)] = values
    return out


@dataclass(frozen=True)
class SciChunkCodec(ArrayBytesCodec):
    """Array→bytes codec whose encoded chunk is a ``.sci`` file (docs/format.md, "Chunked stores")."""

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SciChunkCodec:
        config = data.get("configuration") or {}
        if data.get("name") != CODEC_NAME or config.get("version", CODEC_VERSION) != CODEC_VERSION:
            raise SciFormatError(f"codec {data!r} is not napari-sci codec version {CODEC_VERSION}")
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {"name": CODEC_NAME, "configuration": {"version": CODEC_VERSION}}

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        dtype = chunk_spec.dtype.to_native_dtype()
        fill = chunk_spec.fill_value
        array = decode_chunk(chunk_bytes.to_bytes(), tuple(chunk_spec.shape), dtype,
                             0 if fill is None else fill)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(array)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise SciError("writing through the napari-sci zarr codec is not supported; chunks are "
                       "fitted by `napari-sci compress INPUT -o OUTPUT.sci.zarr`")

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError("a .sci chunk's size depends on its budget, not its input length")


def register() -> None:
    """Make zarr resolve the codec name ``napari-sci`` to :class:`SciChunkCodec` in this process."""
    register_codec(CODEC_NAME, SciChunkCodec)


register()
