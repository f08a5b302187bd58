"""Writing and reading whole ``.sci`` files: atomic writes, fully validated reads.

A write goes to a temporary file in the destination folder and is renamed over the target only when
complete, so an interrupted or failed write leaves nothing behind. A read checks the preamble, the
header CRC and fields, the file length, every payload CRC and the block tiling before returning.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_sci.base.grid_geometry import MAX_TILE_VOXELS, levels_for
from napari_sci.base.networks import BlockNetwork, layer_dims, param_count
from napari_sci.base.octree import BlockTree
from napari_sci.errors import (
    SciChecksumError,
    SciConfigError,
    SciFileExistsError,
    SciFormatError,
    SciPathError,
)
from napari_sci.io.exact_tiles import decode_exact, exact_dtype
from napari_sci.io.format import (
    CODED_KINDS,
    GRID_MODELS,
    KIND_EXACT,
    KIND_GRID,
    KIND_SIREN,
    PREAMBLE,
    RESIDUAL_MODELS,
    SciHeader,
    crc32,
    grid_section,
    pack_header,
    pack_preamble,
    stored_header,
    unpack_header,
    unpack_preamble,
    validate_fields,
)
from napari_sci.io.latents import residual_stream_ok, tile_length_ok
from napari_sci.io.loop_filter import split_choice
from napari_sci.io.residual import split_payload
from napari_sci.io.weights import CODE_BYTES_PER_TENSOR, ans_stream_ok, decode_payload, tensor_sizes


@dataclass(frozen=True)
class SciContents:
    """A validated file in memory: its header and one payload (bytes) per block."""

    header: SciHeader
    payloads: tuple[bytes, ...]
    tree: BlockTree

    @property
    def file_size(self) -> int:
        return PREAMBLE.size + len(pack_header(self.header)) + sum(len(p) for p in self.payloads)

    def weights(self, index: int) -> np.ndarray:
        """Block ``index``'s parameters as float32 (decoded from the entropy-coded v2 payload)."""
        if self.header.version == 1:
            return np.frombuffer(self.payloads[index], dtype="<f4").astype(np.float32)
        record = self.header.blocks[index]
        net = BlockNetwork(int(record["first_width"]), int(record["hidden_width"]))
        dims = layer_dims(self.header.ndim, net, self.header.layers)
        return decode_payload(self.payloads[index], tensor_sizes(dims))


def _with_payloads(header: SciHeader, payloads: Sequence[bytes]) -> SciHeader:
    """``header`` with each record's length and CRC taken from its payload."""
    blocks = header.blocks.copy()
    if len(payloads) != len(blocks):
        raise ValueError(f"{len(blocks)} block records but {len(payloads)} payloads")
    blocks["length"] = [len(p) for p in payloads]
    blocks["crc"] = [crc32(p) if len(p) else 0 for p in payloads]
    return replace(header, blocks=blocks)


def serialise(header: SciHeader, payloads: Sequence[bytes]) -> bytes:
    """The complete file bytes; fills in each record's length and CRC from its payload."""
    header_bytes = pack_header(_with_payloads(header, payloads))
    return pack_preamble(header_bytes, header.version) + header_bytes + b"".join(payloads)


def assemble(header: SciHeader, payloads: Sequence[bytes], tree: BlockTree) -> SciContents:
    """What :func:`parse` would return for ``serialise(header, payloads)``, built without the bytes.

    The encoder measures its file from this before the file exists, so it runs the reader's checks
    (all but the byte-level ones): a file the reader would refuse is never written.
    """
    stored = stored_header(_with_payloads(header, payloads))
    validate_fields(stored)
    if (tree.shape, tree.max_depth, tree.min_leaf_side) != (stored.shape, stored.tree_depth,
                                                            stored.min_leaf_side):
        raise ValueError("the tree is not the one the header describes")
    _check_layout(stored, tree)
    _check_weights(stored, payloads)
    _check_streams(stored, payloads, tree)
    return SciContents(stored, tuple(payloads), tree)


def check_output_path(target: Path, overwrite: bool) -> Path:
    """Refuse an output with no folder, one that exists (unless ``overwrite``) or is a directory;
    returns its folder. Callers run it before long work too, so a bad path fails at once."""
    folder = target.parent
    if not folder.is_dir():
        raise SciPathError(f"output folder {folder} does not exist; create it first")
    if target.exists() and not overwrite:
        raise SciFileExistsError(f"{target} exists; pass overwrite (--overwrite) to replace it")
    if target.is_dir():
        raise SciPathError(f"output {target} is a directory; give a file name")
    return folder


def write_atomic(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename; never leaves a partial file.

    Any failure (disk full, permissions, an exception or Ctrl-C while writing) removes the temporary
    file and leaves an existing target untouched; OS errors become one-line ``SciPathError``.
    """
    target = Path(path)
    folder = check_output_path(target, overwrite)
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise SciPathError(f"cannot write in {folder}: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if not overwrite and target.exists():
            raise SciFileExistsError(f"{target} appeared while writing; not replacing it")
        os.replace(temp_name, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        if isinstance(error, OSError):
            raise SciPathError(f"cannot write {target}: {error.strerror or error}; nothing was "
                               "written") from error
        raise
    _sync_folder(folder)
    return target


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); harmless where folders cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_weights(header: SciHeader, payloads: Sequence[bytes]) -> None:
    """Stored v1 weights must be finite numbers; NaN or infinity is corruption (or a diverged fit).

    v2 weights are integers times steps of at most 1, finite by construction.
    """
    if header.version != 1:
        return
    for record, payload in zip(header.blocks, payloads):
        if payload and not np.isfinite(np.frombuffer(payload, dtype="<f4")).all():
            raise SciFormatError(f"block node {record['node']} has non-finite weights: the file is "
                                 "corrupt")


def _check_network_sizes(header: SciHeader, tree: BlockTree) -> None:
    """No network has more parameters than its block has voxels (the allocation caps every share
    there: a larger network stores nothing more). Without this, a v2 payload of a few hundred bytes
    could claim a network of millions of parameters and make decoding take minutes."""
    for record in header.blocks:
        if record["kind"] != KIND_SIREN:
            continue
        params = param_count(header.ndim, int(record["first_width"]), int(record["hidden_width"]),
                             header.layers)
        voxels = tree.nodes[int(record["node"])].voxels
        if params > voxels:
            raise SciFormatError(f"block node {record['node']} claims a network of {params} parameters "
                                 f"for {voxels} voxels: the file is corrupt")


def _check_tiles(header: SciHeader, tree: BlockTree) -> None:
    """Latent-grid tiles: at most MAX_TILE_VOXELS each (a larger claim would allocate gigabytes of
    latents), and payload lengths that fit their levels and latent counts (docs/format.md)."""
    if header.model not in GRID_MODELS:
        return
    levels = grid_section(header).layout.levels
    for record in header.blocks:
        if record["kind"] not in (KIND_GRID, KIND_EXACT):
            continue
        size = tree.nodes[int(record["node"])].size
        if math.prod(size) > MAX_TILE_VOXELS:
            raise SciFormatError(f"tile node {record['node']} of {math.prod(size)} voxels is larger than "
                                 f"a tile may be ({MAX_TILE_VOXELS}): the file is corrupt")
        if record["kind"] == KIND_EXACT:
            if not exact_dtype(header.dtype):
                raise SciFormatError(f"tile node {record['node']} is stored exactly in a file of dtype "
                                     f"{header.dtype}, which a float32 does not hold: the file is corrupt")
            if int(record["length"]) < 1:
                raise SciFormatError(f"exact tile node {record['node']} has an empty payload: the file "
                                     "is corrupt")
        elif header.model in RESIDUAL_MODELS:  # u32 latent length first; the parts are checked with
            if int(record["length"]) < 4 + levels_for(size, levels):  # the payloads (_check_streams)
                raise SciFormatError(f"tile node {record['node']} payload of {record['length']} bytes is "
                                     "too short for a latent length and its levels: the file is corrupt")
        elif not tile_length_ok(int(record["length"]), size, levels):
            raise SciFormatError(f"tile node {record['node']} payload of {record['length']} bytes does "
                                 f"not fit its latents: the file is corrupt")


def _check_streams(header: SciHeader, payloads: Sequence[bytes], tree: BlockTree) -> None:
    """Every entropy-coded payload (v2 networks, grid tiles, the grid synthesis) is a well-formed ANS
    stream, so that a file the reader accepts also decodes (found by the fuzzer, 2026-11-27)."""
    if header.version == 1:
        return
    if header.model in GRID_MODELS:
        section = grid_section(header)
        if not ans_stream_ok(section.synthesis, 2 * len(section.layout.tensor_sizes())):
            raise SciFormatError("the synthesis payload's entropy-coded stream is malformed: the file "
                                 "is corrupt")
        levels = section.layout.levels
    for record, payload in zip(header.blocks, payloads):
        if record["kind"] == KIND_SIREN:
            offset = 2 * CODE_BYTES_PER_TENSOR * header.layers
        elif record["kind"] == KIND_GRID:
            size = tree.nodes[int(record["node"])].size
            offset = levels_for(size, levels)
            if header.model in RESIDUAL_MODELS:
                payload, rest = split_payload(payload)
                if section.filtered:  # models 13 and 14: the tile's loop filter comes first
                    rest = split_choice(rest, section.shared_filter)[1]
                if not (tile_length_ok(len(payload), size, levels) and residual_stream_ok(len(rest), size)
                        and ans_stream_ok(rest, 0)):
                    raise SciFormatError(f"tile node {record['node']} has a malformed latent or residual "
                                         "part: the file is corrupt")
        else:
            continue
        if not ans_stream_ok(payload, offset):
            raise SciFormatError(f"block node {record['node']} has a malformed entropy-coded stream: "
                                 "the file is corrupt")


def _check_exact_tiles(header: SciHeader, payloads: Sequence[bytes], tree: BlockTree) -> None:
    """Every exact tile decompresses to exactly its voxels, within the file's value range and its own
    ``lo``/``hi``, so that a file the reader accepts also decodes (docs/format.md, "Kind 4")."""
    for record, payload in zip(header.blocks, payloads):
        if record["kind"] != KIND_EXACT:
            continue
        values = decode_exact(payload, tree.nodes[int(record["node"])].size, header.dtype)
        low = max(header.value_min, float(record["lo"]))
        high = min(header.value_max, float(record["hi"]))
        inside = (values >= low) & (values <= high) if values.dtype != np.bool_ else values >= low
        if not bool(np.all(inside)):
            raise SciFormatError(f"exact tile node {record['node']} holds values outside its stated "
                                 "range: the file is corrupt")


def _check_layout(header: SciHeader, tree: BlockTree) -> None:
    """The blocks tile the volume exactly once and no network or tile outgrows what it may hold."""
    nodes = [int(n) for n in header.blocks["node"]]
    if len(nodes) > len(tree) or not all(n < len(tree) for n in nodes) or not tree.is_tiling(nodes):
        raise SciFormatError("the block table does not tile the volume exactly once")
    _check_network_sizes(header, tree)
    _check_tiles(header, tree)


def _block_tree(header: SciHeader) -> BlockTree:
    try:
        return BlockTree(header.shape, header.tree_depth, header.min_leaf_side)
    except SciConfigError as error:
        raise SciFormatError(f"the block tree cannot be rebuilt: {error}") from error


def parse(data: bytes) -> SciContents:
    """Validate a whole file's bytes and split them into header and payloads."""
    version, length, crc = unpack_preamble(data, len(data))
    header = unpack_header(memoryview(data)[PREAMBLE.size: PREAMBLE.size + length], version, crc)
    lengths = header.blocks["length"].astype(np.int64)
    expected = PREAMBLE.size + length + int(lengths.sum())
    if expected != len(data):
        state = "is truncated" if len(data) < expected else "has trailing bytes"
        raise SciFormatError(f"the file is {len(data)} bytes but its header describes {expected}: "
                             f"it {state}")
    tree = _block_tree(header)
    _check_layout(header, tree)
    payloads = []
    at = PREAMBLE.size + length
    for record, size in zip(header.blocks, lengths):
        payload = data[at: at + size]
        at += size
        if record["kind"] in CODED_KINDS and crc32(payload) != int(record["crc"]):
            raise SciChecksumError(f"payload of block node {record['node']} fails its checksum: "
                                   "the file is corrupt")
        payloads.append(payload)
    _check_weights(header, payloads)
    _check_streams(header, payloads, tree)
    _check_exact_tiles(header, payloads, tree)
    return SciContents(header, tuple(payloads), tree)


def read_sci(path: str | os.PathLike[str]) -> SciContents:
    """Read and validate a ``.sci`` file; raises a ``SciFormatError`` subclass if anything is off.

    A missing, unreadable or non-regular path (a folder, a pipe) is a ``SciPathError``; the preamble
    is checked against the file's size before the rest is read, so a foreign file costs 20 bytes.
    """
    source = Path(path)
    if not source.exists():
        raise SciPathError(f"{source} does not exist")
    if not source.is_file():
        raise SciPathError(f"{source} is not a regular file")
    try:
        size = source.stat().st_size
        with source.open("rb") as stream:
            head = stream.read(PREAMBLE.size)
            unpack_preamble(head, size)  # refuse foreign or absurd files before reading them whole
            data = head + stream.read(size - len(head) + 1)  # one byte more reveals a growing file
    except PermissionError as error:
        raise SciPathError(f"cannot read {source}: permission denied") from error
    except OSError as error:
        raise SciFormatError(f"cannot read {source}: {error.strerror or error}") from error
    return parse(data)
