"""The ``.sci`` byte layout (docs/format.md): constants, header pack/unpack and field validation.

Numpy and the standard library only, so a file can be inspected without torch. Every size is checked
against the bytes actually present before anything is allocated; ids are fixed constants.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from napari_sci.base.networks import param_count
from napari_sci.base.octree import MAX_TREE_NODES
from napari_sci.base.volume import FLOAT32_MAX
from napari_sci.errors import SciChecksumError, SciFormatError, SciVersionError
from napari_sci.io.latents import GridSection, unpack_grid_section
from napari_sci.io.weights import CODE_BYTES_PER_TENSOR

MAGIC = b"\x89SCI\r\n\x1a\n"
FORMAT_VERSION = 2  # what the SIREN family writes; the latent-grid family writes 3
SUPPORTED_VERSIONS = frozenset({1, 2, 3})
MODEL_SIREN, MODEL_GRID, MODEL_GRID_CONTEXT, MODEL_GRID_PREDICTIVE = 1, 2, 3, 4  # version 3 model ids
MODEL_GRID_CONTEXT_BSPLINE, MODEL_GRID_PREDICTIVE_BSPLINE = 5, 6  # models 3 and 4, B-spline upsampling
MODEL_GRID_CONTEXT_RESIDUAL, MODEL_GRID_CONTEXT_BSPLINE_RESIDUAL = 7, 8  # models 3 and 5 + a DCT residual
# models 7 and 8 with the residual's coding 2 (band flags, coefficient contexts)
MODEL_GRID_CONTEXT_BANDED, MODEL_GRID_CONTEXT_BSPLINE_BANDED = 9, 10
# models 9 and 10 with the residual's coding 3 (the block shape stated)
MODEL_GRID_CONTEXT_SHAPED, MODEL_GRID_CONTEXT_BSPLINE_SHAPED = 11, 12
# models 11 and 12 with a loop filter over the latent tiles: what is written now
MODEL_GRID_CONTEXT_FILTERED, MODEL_GRID_CONTEXT_BSPLINE_FILTERED = 13, 14
MODEL_IDS = {"siren": MODEL_SIREN, "grid": MODEL_GRID, "grid-context": MODEL_GRID_CONTEXT,
             "grid-predictive": MODEL_GRID_PREDICTIVE, "grid-context-bspline": MODEL_GRID_CONTEXT_BSPLINE,
             "grid-predictive-bspline": MODEL_GRID_PREDICTIVE_BSPLINE,
             "grid-context-residual": MODEL_GRID_CONTEXT_RESIDUAL,
             "grid-context-bspline-residual": MODEL_GRID_CONTEXT_BSPLINE_RESIDUAL,
             "grid-context-residual-banded": MODEL_GRID_CONTEXT_BANDED,
             "grid-context-bspline-residual-banded": MODEL_GRID_CONTEXT_BSPLINE_BANDED,
             "grid-context-residual-shaped": MODEL_GRID_CONTEXT_SHAPED,
             "grid-context-bspline-residual-shaped": MODEL_GRID_CONTEXT_BSPLINE_SHAPED,
             "grid-context-residual-filtered": MODEL_GRID_CONTEXT_FILTERED,
             "grid-context-bspline-residual-filtered": MODEL_GRID_CONTEXT_BSPLINE_FILTERED}
# latent grids: factorised, context-coded, context-coded with predicted means
GRID_MODELS = (MODEL_GRID, MODEL_GRID_CONTEXT, MODEL_GRID_PREDICTIVE, MODEL_GRID_CONTEXT_BSPLINE,
               MODEL_GRID_PREDICTIVE_BSPLINE, MODEL_GRID_CONTEXT_RESIDUAL,
               MODEL_GRID_CONTEXT_BSPLINE_RESIDUAL, MODEL_GRID_CONTEXT_BANDED,
               MODEL_GRID_CONTEXT_BSPLINE_BANDED, MODEL_GRID_CONTEXT_SHAPED,
               MODEL_GRID_CONTEXT_BSPLINE_SHAPED, MODEL_GRID_CONTEXT_FILTERED,
               MODEL_GRID_CONTEXT_BSPLINE_FILTERED)
# residual models (3-D files only) → the coding of their coefficients (docs/format.md)
RESIDUAL_CODING = {MODEL_GRID_CONTEXT_RESIDUAL: 1, MODEL_GRID_CONTEXT_BSPLINE_RESIDUAL: 1,
                   MODEL_GRID_CONTEXT_BANDED: 2, MODEL_GRID_CONTEXT_BSPLINE_BANDED: 2,
                   MODEL_GRID_CONTEXT_SHAPED: 3, MODEL_GRID_CONTEXT_BSPLINE_SHAPED: 3,
                   MODEL_GRID_CONTEXT_FILTERED: 3, MODEL_GRID_CONTEXT_BSPLINE_FILTERED: 3}
RESIDUAL_MODELS = tuple(RESIDUAL_CODING)
FILTERED_MODELS = (MODEL_GRID_CONTEXT_FILTERED, MODEL_GRID_CONTEXT_BSPLINE_FILTERED)  # a loop filter
# (GridConfig.entropy, GridConfig.upsampling, GridConfig.residual) → model id, and back
GRID_MODEL_OF = {("factorised", "linear", "none"): MODEL_GRID,
                 ("context", "linear", "none"): MODEL_GRID_CONTEXT,
                 ("predictive", "linear", "none"): MODEL_GRID_PREDICTIVE,
                 ("context", "bspline", "none"): MODEL_GRID_CONTEXT_BSPLINE,
                 ("predictive", "bspline", "none"): MODEL_GRID_PREDICTIVE_BSPLINE,
                 ("context", "linear", "dct"): MODEL_GRID_CONTEXT_FILTERED,
                 ("context", "bspline", "dct"): MODEL_GRID_CONTEXT_BSPLINE_FILTERED}
# what ``GridConfig.loop_filter = False`` writes instead of models 13 and 14
UNFILTERED_MODEL = {MODEL_GRID_CONTEXT_FILTERED: MODEL_GRID_CONTEXT_SHAPED,
                    MODEL_GRID_CONTEXT_BSPLINE_FILTERED: MODEL_GRID_CONTEXT_BSPLINE_SHAPED}


def grid_model_id(entropy: str, upsampling: str, residual: str, filtered: bool) -> int:
    """The model id a latent-grid file of these settings is written with."""
    model = GRID_MODEL_OF[entropy, upsampling, residual]
    return model if filtered else UNFILTERED_MODEL.get(model, model)


GRID_KIND_OF_MODEL = {model: kind for kind, model in GRID_MODEL_OF.items()} | {
    MODEL_GRID_CONTEXT_SHAPED: ("context", "linear", "dct"),
    MODEL_GRID_CONTEXT_BSPLINE_SHAPED: ("context", "bspline", "dct"),
    MODEL_GRID_CONTEXT_RESIDUAL: ("context", "linear", "dct"),  # read forever, no longer written
    MODEL_GRID_CONTEXT_BSPLINE_RESIDUAL: ("context", "bspline", "dct"),
    MODEL_GRID_CONTEXT_BANDED: ("context", "linear", "dct"),
    MODEL_GRID_CONTEXT_BSPLINE_BANDED: ("context", "bspline", "dct")}
_MODEL_HEAD = struct.Struct("<BI")  # version 3: model id, section length
PREAMBLE = struct.Struct("<8sHHII")  # magic, version, flags, header_length, header_crc
MAX_HEADER_BYTES = 64 * 2**20
# A version 2 payload is one ANS stream, which can yield any number of symbols from a few bytes: a
# hostile record with hidden_width 33,289 (5·10⁹ parameters in 608 bytes) decoded until killed (fuzz
# find, session 24). No encoder writes a block near 2^26 parameters (256 MB of float32).
MAX_BLOCK_PARAMS = 1 << 26

DTYPE_IDS: dict[int, np.dtype] = {
    1: np.dtype("uint8"), 2: np.dtype("uint16"), 3: np.dtype("int16"), 4: np.dtype("float32"),
    5: np.dtype("float64"), 6: np.dtype("bool"), 7: np.dtype("int8"), 8: np.dtype("uint32"),
    9: np.dtype("int32"),
}
ID_OF_DTYPE = {dtype: code for code, dtype in DTYPE_IDS.items()}
PARTITION_IDS = {"adaptive": 0, "equal": 1, "none": 2}
ALLOCATION_IDS = {"size-over-d": 0, "size": 1, "inverse-d": 2, "equal": 3}
KIND_CONSTANT, KIND_SIREN, KIND_MEAN, KIND_GRID, KIND_EXACT = 0, 1, 2, 3, 4
VALUE_KINDS = (KIND_CONSTANT, KIND_MEAN)  # blocks stored as one value
EXACT_KINDS = (KIND_CONSTANT, KIND_EXACT)  # blocks decoded without loss (the deblocking leaves them)
CODED_KINDS = (KIND_SIREN, KIND_GRID, KIND_EXACT)  # blocks with a payload (and its CRC)

_FIXED_TAIL = struct.Struct("<dd B H B fff BB HH II f I")
BLOCK_RECORD = np.dtype([
    ("node", "<u4"), ("kind", "u1"), ("first_width", "<u2"), ("hidden_width", "<u2"),
    ("lo", "<f4"), ("hi", "<f4"), ("length", "<u4"), ("crc", "<u4"),
])


@dataclass(frozen=True)
class SciHeader:
    """Everything in the header section; ``blocks`` is a structured array of ``BLOCK_RECORD``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    spacing: tuple[float, ...]
    value_min: float
    value_max: float
    tree_depth: int
    min_leaf_side: int
    layers: int
    w0: float
    w0_hidden: float
    fr: float
    partition: str
    allocation: str
    max_blocks: int
    top_m: int
    steps: int
    seed: int
    psnr: float
    blocks: np.ndarray = field(repr=False)
    version: int = FORMAT_VERSION
    model: int = MODEL_SIREN
    section: bytes = field(default=b"", repr=False)

    @property
    def family(self) -> str:
        """The model family that wrote the file: ``grid`` (latent grids) or ``siren``."""
        return "grid" if self.model in GRID_MODELS else "siren"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_voxels(self) -> int:
        return math.prod(int(s) for s in self.shape)  # Python ints: a hostile shape overflows int64


def header_length(ndim: int, n_blocks: int, section: int | None = None) -> int:
    """Bytes of the header section for ``ndim`` axes and ``n_blocks`` blocks; ``section`` is the
    model section's length in a version 3 file (None: versions 1–2, which have none)."""
    extra = 0 if section is None else _MODEL_HEAD.size + section
    return 2 + 8 * ndim + _FIXED_TAIL.size + extra + BLOCK_RECORD.itemsize * n_blocks


def file_overhead(ndim: int, n_blocks: int, section: int | None = None) -> int:
    """Bytes of a file besides its payloads: preamble plus header."""
    return PREAMBLE.size + header_length(ndim, n_blocks, section)


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _float32(value: float) -> float:
    return float(np.float32(value))


def stored_header(header: SciHeader) -> SciHeader:
    """``header`` with its float32 fields rounded as the file stores them (what a reader gets back)."""
    return replace(header, spacing=tuple(_float32(s) for s in header.spacing), w0=_float32(header.w0),
                   w0_hidden=_float32(header.w0_hidden), fr=_float32(header.fr),
                   psnr=_float32(header.psnr))


def pack_header(header: SciHeader) -> bytes:
    """Header section bytes (without the preamble)."""
    ndim = header.ndim
    parts = [
        struct.pack("<BB", ndim, ID_OF_DTYPE[np.dtype(header.dtype)]),
        struct.pack(f"<{ndim}I", *header.shape),
        struct.pack(f"<{ndim}f", *header.spacing),
        _FIXED_TAIL.pack(
            header.value_min, header.value_max, header.tree_depth, header.min_leaf_side,
            header.layers, header.w0, header.w0_hidden, header.fr,
            PARTITION_IDS[header.partition], ALLOCATION_IDS[header.allocation],
            header.max_blocks, header.top_m, header.steps, header.seed, header.psnr,
            len(header.blocks)),
    ]
    if header.version >= 3:
        parts += [_MODEL_HEAD.pack(header.model, len(header.section)), bytes(header.section)]
    parts.append(np.ascontiguousarray(header.blocks, dtype=BLOCK_RECORD).tobytes())
    return b"".join(parts)


def pack_preamble(header_bytes: bytes, version: int = FORMAT_VERSION) -> bytes:
    return PREAMBLE.pack(MAGIC, version, 0, len(header_bytes), crc32(header_bytes))


def unpack_preamble(data: bytes | memoryview, file_size: int) -> tuple[int, int, int]:
    """Check magic, version, flags and header length; return (version, header_length, header_crc)."""
    if len(data) < PREAMBLE.size or bytes(data[:8]) != MAGIC:
        raise SciFormatError("not a .sci file (wrong magic bytes or shorter than 20 bytes)")
    _, version, flags, length, crc = PREAMBLE.unpack(bytes(data[: PREAMBLE.size]))
    if version not in SUPPORTED_VERSIONS:
        raise SciVersionError(f".sci format version {version} is not supported by this reader "
                              f"(supported: {sorted(SUPPORTED_VERSIONS)}); upgrade napari-sci")
    if flags != 0:
        raise SciFormatError(f"unknown flags 0x{flags:04x} in a version {version} file")
    if length > MAX_HEADER_BYTES or PREAMBLE.size + length > file_size:
        raise SciFormatError(f"header length {length} exceeds the file ({file_size} bytes): "
                             "the file is truncated or corrupt")
    return version, length, crc


def unpack_header(data: bytes | memoryview, version: int, expected_crc: int) -> SciHeader:
    """Parse and validate the header section (CRC first, then every field)."""
    if crc32(data) != expected_crc:
        raise SciChecksumError("header checksum mismatch: the file is corrupt")
    data = bytes(data)
    if len(data) < 2:
        raise SciFormatError("header too short")
    ndim, dtype_id = struct.unpack_from("<BB", data, 0)
    if ndim not in (2, 3):
        raise SciFormatError(f"ndim must be 2 or 3, got {ndim}")
    if dtype_id not in DTYPE_IDS:
        raise SciFormatError(f"unknown dtype id {dtype_id}")
    n_blocks_at = 2 + 8 * ndim + _FIXED_TAIL.size
    if len(data) < n_blocks_at:
        raise SciFormatError("header too short for its fixed fields")
    shape = struct.unpack_from(f"<{ndim}I", data, 2)
    spacing = struct.unpack_from(f"<{ndim}f", data, 2 + 4 * ndim)
    tail = _FIXED_TAIL.unpack_from(data, 2 + 8 * ndim)
    n_blocks = tail[-1]
    if n_blocks > MAX_TREE_NODES:
        raise SciFormatError(f"{n_blocks} blocks is more than any block tree has nodes "
                             f"({MAX_TREE_NODES})")
    model, section_length = MODEL_SIREN, None
    if version >= 3:
        if len(data) < n_blocks_at + _MODEL_HEAD.size:
            raise SciFormatError("header too short for its model id")
        model, section_length = _MODEL_HEAD.unpack_from(data, n_blocks_at)
    expected = header_length(ndim, n_blocks, section_length)
    if len(data) != expected:  # checked before the section or block table is sliced
        what = "" if section_length is None else f"a {section_length}-byte model section and "
        raise SciFormatError(f"header length {len(data)} does not match {what}{n_blocks} blocks "
                             f"(expected {expected})")
    section_at = n_blocks_at + (0 if section_length is None else _MODEL_HEAD.size)
    blocks_at = section_at + (section_length or 0)
    section = data[section_at:blocks_at]
    if model not in MODEL_IDS.values():
        raise SciVersionError(f"model family id {model} is not known to this reader (known: "
                              f"{sorted(MODEL_IDS.values())}); upgrade napari-sci")
    blocks = np.frombuffer(data, dtype=BLOCK_RECORD, count=n_blocks, offset=blocks_at).copy()
    header = SciHeader(
        shape=tuple(int(s) for s in shape), dtype=DTYPE_IDS[dtype_id],
        spacing=tuple(float(s) for s in spacing), value_min=tail[0], value_max=tail[1],
        tree_depth=tail[2], min_leaf_side=tail[3], layers=tail[4], w0=tail[5], w0_hidden=tail[6],
        fr=tail[7], partition=_name_of(PARTITION_IDS, tail[8], "partition"),
        allocation=_name_of(ALLOCATION_IDS, tail[9], "allocation"), max_blocks=tail[10],
        top_m=tail[11], steps=tail[12], seed=tail[13], psnr=tail[14], blocks=blocks, version=version,
        model=model, section=section)
    validate_fields(header)
    return header


def _name_of(ids: dict[str, int], value: int, what: str) -> str:
    for name, code in ids.items():
        if code == value:
            return name
    raise SciFormatError(f"unknown {what} id {value}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SciFormatError(message)


def _check_dtype_range(header: SciHeader) -> None:
    """The value range must be representable in the stored dtype (decoding clips to it and casts)."""
    dtype = np.dtype(header.dtype)
    if dtype == np.bool_:
        low, high = 0.0, 1.0
    elif dtype.kind in "ui":
        low, high = float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)
    else:
        low, high = -FLOAT32_MAX, FLOAT32_MAX
    _check(low <= header.value_min and header.value_max <= high,
           f"value range [{header.value_min}, {header.value_max}] does not fit dtype {dtype}")
    if dtype.kind in "uib":  # integer data has integer extremes; decoding rounds within them
        _check(float(header.value_min).is_integer() and float(header.value_max).is_integer(),
               f"value range [{header.value_min}, {header.value_max}] of an integer dtype is not "
               "whole numbers")


def validate_fields(header: SciHeader) -> None:
    """Range checks of docs/format.md that need no tree (the tiling is checked by the reader)."""
    _check(all(s >= 1 for s in header.shape), f"shape {header.shape} has an empty axis")
    _check(all(math.isfinite(s) and s > 0 for s in header.spacing),
           f"spacing {header.spacing} must be finite and > 0")
    _check(math.isfinite(header.value_min) and math.isfinite(header.value_max)
           and header.value_min <= header.value_max,
           f"value range [{header.value_min}, {header.value_max}] is invalid")
    _check_dtype_range(header)
    _check(header.tree_depth <= 6, f"tree depth {header.tree_depth} > 6")
    _check(header.min_leaf_side >= 1, "min_leaf_side must be >= 1")
    _check(header.version >= 3 or header.model == MODEL_SIREN, "a version 1–2 file holds SIRENs only")
    _check(header.version >= 3 or not header.section, "a version 1–2 file has no model section")
    _check(header.model not in GRID_MODELS or header.version >= 3, "the latent-grid model needs version 3")
    _check(header.layers >= (3 if header.model == MODEL_SIREN else 2), f"layers {header.layers} too few")
    for name in ("w0", "w0_hidden"):
        value = getattr(header, name)
        _check(math.isfinite(value) and value > 0, f"{name}={value} must be finite and > 0")
    blocks = header.blocks
    _check(len(blocks) >= 1, "the file has no blocks")
    _check(bool(np.all(np.isfinite(blocks["lo"])) and np.all(np.isfinite(blocks["hi"]))),
           "a block value range is not finite")
    _check(bool(np.all(blocks["hi"] >= blocks["lo"])), "a block has hi < lo")
    _check(bool(np.all(blocks["hi"].astype(np.float64) - blocks["lo"] <= FLOAT32_MAX)),
           "a block value range is wider than float32 can hold")
    model_kinds = (KIND_GRID, KIND_EXACT) if header.model in GRID_MODELS else (KIND_SIREN,)
    _check(bool(np.all(np.isin(blocks["kind"], (KIND_CONSTANT, KIND_MEAN, *model_kinds)))),
           "unknown block kind (or one of another model family)")
    _check(len(np.unique(blocks["node"])) == len(blocks), "a node appears twice in the block table")
    if header.model in GRID_MODELS:
        _check_grid_fields(blocks, header)
    else:
        _check(not header.section, "the SIREN model has an empty model section")
        _check_block_fields(blocks, header)


def _check_grid_fields(blocks: np.ndarray, header: SciHeader) -> None:
    """Models 2, 3 and 4: a valid section whose synthesis depth is the header's ``layers``; kind 3 records
    have no widths (their payload lengths need the tile shapes: the reader checks them with the tree)."""
    section = grid_section(header)
    _check(header.model not in RESIDUAL_MODELS or len(header.shape) == 3,
           f"model {header.model} (a residual layer) needs a 3-D volume, not {len(header.shape)}-D")
    _check(section.layout.layers == header.layers,
           f"header layers {header.layers} differ from the synthesis' {section.layout.layers}")
    value = np.isin(blocks["kind"], VALUE_KINDS)
    bad = value & ((blocks["first_width"] != 0) | (blocks["hidden_width"] != 0)
                   | (blocks["length"] != 0) | (blocks["lo"] != blocks["hi"]))
    _check(not bad.any(), f"constant block {_first_node(blocks, bad)} has payload fields")
    bad = ~value & ((blocks["first_width"] != 0) | (blocks["hidden_width"] != 0))
    _check(not bad.any(), f"latent-grid tile {_first_node(blocks, bad)} has network widths")


def _check_block_fields(blocks: np.ndarray, header: SciHeader) -> None:
    """Per-record checks, vectorised: a hostile header may hold hundreds of thousands of records.

    Payload lengths: v1 is exactly 4 bytes a parameter; v2 is the codes, then whole u32 words, never
    beyond 32 bits a parameter (the coder cannot need more; a larger claim is corruption).
    """
    value = np.isin(blocks["kind"], VALUE_KINDS)
    first = blocks["first_width"].astype(np.int64)
    hidden = blocks["hidden_width"].astype(np.int64)
    length = blocks["length"].astype(np.int64)
    bad = value & ((first != 0) | (hidden != 0) | (length != 0) | (blocks["lo"] != blocks["hi"]))
    _check(not bad.any(), f"constant block {_first_node(blocks, bad)} has network fields")
    bad = ~value & ((first < 1) | (hidden < 1))
    _check(not bad.any(), f"block {_first_node(blocks, bad)} has a zero width")
    params = param_count(header.ndim, first, hidden, header.layers)
    bad = ~value & (params > MAX_BLOCK_PARAMS) & (header.version >= 2)  # v1: 4 bytes a parameter
    _check(not bad.any(), f"block {_first_node(blocks, bad)} claims more than 2^26 network parameters")
    if header.version == 1:
        bad = ~value & (length != 4 * params)
        expected = 4 * params
    else:
        codes = 2 * CODE_BYTES_PER_TENSOR * header.layers
        bad = ~value & ((length < codes + 4) | ((length - codes) % 4 != 0)
                        | (length > codes + 4 * params + 64))
        expected = params
    if bad.any():
        at = int(np.argmax(bad))
        node, got = int(blocks["node"][at]), int(length[at])
        if header.version == 1:
            raise SciFormatError(f"block {node} payload is {got} bytes, expected {int(expected[at])}")
        raise SciFormatError(f"block {node} v2 payload of {got} bytes does not fit "
                             f"{int(expected[at])} parameters")


def _first_node(blocks: np.ndarray, mask: np.ndarray) -> int:
    return int(blocks["node"][int(np.argmax(mask))]) if mask.any() else -1


def grid_section(header: SciHeader) -> GridSection:
    """The parsed model section of a latent-grid file (models 2–14)."""
    entropy, upsampling, _ = GRID_KIND_OF_MODEL[header.model]
    return unpack_grid_section(header.section, context=entropy != "factorised",
                               mean=entropy == "predictive", upsampling=upsampling,
                               residual=RESIDUAL_CODING.get(header.model, 0),
                               filtered=header.model in FILTERED_MODELS)
