"""Decoding: stored networks evaluated on any box of the volume, the deblocking filter at block faces,
and the one conversion to the file's dtype that every reader goes through (CLI, API, lazy array,
napari layer, benchmarks, and encode's own measurement).

Random access: a request decodes only the parts of the blocks it touches, evaluating each network on the
requested voxels alone. The deblocking filter smooths the one-voxel step across every face between two
blocks (a [1, 2, 1]/4 kernel on the two voxels beside the face, axis after axis); it reads one voxel
beyond a request only along axes where a face lies on the request's border.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from napari_sci.base.volume import ValueRange, to_dtype
from napari_sci.io.container import SciContents
from napari_sci.io.format import EXACT_KINDS, KIND_GRID, VALUE_KINDS
from napari_sci.io.loop_filter import LoopFilter, filter_region
from napari_sci.models.registry import block_models

Box = tuple[tuple[int, int], ...]  # (start, stop) per axis

# A large request evaluates its blocks on two threads: numpy's work releases the GIL but the entropy
# decoder does not, so a slice (a few tiles, decoded mostly by the entropy coder) gains nothing and
# runs alone, while a whole volume spends most of its time in numpy (docs/benchmarks.md §7, session 31).
DECODE_THREADS = min(2, os.cpu_count() or 1)
PARALLEL_VOXELS = 1 << 20  # requests of at least this many voxels use them
# a loop filter's window of at most this many planes along axis 0 is decoded and kept plane by plane,
# in at most this many bytes of deblocked planes per open file
THIN_WINDOW, PLANE_CACHE_BYTES = 8, 64 << 20
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    """The process's threads for evaluating blocks, started on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="napari-sci-decode")
        return _pool


def deblock(values: np.ndarray, labels: np.ndarray, exact: np.ndarray | None = None) -> np.ndarray:
    """Smooth across every face between two blocks; ``labels`` holds each voxel's block index.

    Each axis in turn: for a face between voxels p and q (different labels), p ← (p₋₁ + 2p + q)/4 and
    q ← (p + 2q + q₊₁)/4, from the values before this axis's pass. Voxels of blocks marked in ``exact``
    (indexed by label: blocks whose data was one constant value) keep their value, as do all voxels
    away from faces.
    """
    out = values.astype(np.float32, copy=True)
    frozen = exact[labels] if exact is not None else np.zeros(labels.shape, dtype=bool)
    for axis in range(values.ndim):
        if values.shape[axis] < 2:
            continue
        src = np.moveaxis(out, axis, 0).copy()
        lab = np.moveaxis(labels, axis, 0)
        dst = np.moveaxis(out, axis, 0)
        keep = np.moveaxis(frozen, axis, 0)
        face = lab[:-1] != lab[1:]
        if not face.any():
            continue
        before = np.concatenate([src[:1], src[:-1]])  # p₋₁ with edge replication
        after = np.concatenate([src[1:], src[-1:]])   # q₊₁ with edge replication
        p_new = (before[:-1] + 2 * src[:-1] + src[1:]) * 0.25
        q_new = (src[:-1] + 2 * src[1:] + after[1:]) * 0.25
        dst[:-1] = np.where(face & ~keep[:-1], p_new, dst[:-1])
        dst[1:] = np.where(face & ~keep[1:], q_new, dst[1:])
    return out


class VolumeDecoder:
    """Decodes boxes of a validated ``.sci`` file through its model family; thread-safe."""

    def __init__(self, contents: SciContents, device: str = "cpu") -> None:
        self.contents = contents
        header = contents.header
        self.header = header
        nodes = [contents.tree.nodes[int(n)] for n in header.blocks["node"]]
        self.origins = np.array([n.origin for n in nodes], dtype=np.int64)
        self.sizes = np.array([n.size for n in nodes], dtype=np.int64)
        self.models = block_models(contents, self.sizes, device)
        # deblocked planes kept for the loop filter's neighbours (see _deblocked_window)
        self._planes: OrderedDict[tuple[int, Box], np.ndarray] = OrderedDict()
        self._planes_bytes = 0
        self._planes_lock = threading.Lock()

    def blocks_touching(self, box: Box) -> list[int]:
        """Indices of the blocks that intersect ``box``."""
        start = np.array([b[0] for b in box])
        stop = np.array([b[1] for b in box])
        hit = np.all((self.origins < stop) & (self.origins + self.sizes > start), axis=1)
        return [int(i) for i in np.flatnonzero(hit)]

    def evaluate_block(self, index: int, local: Box) -> np.ndarray:
        """Values (float32, data units) of block ``index`` on the block-local box ``local``."""
        record = self.header.blocks[index]
        if record["kind"] in VALUE_KINDS:
            return np.full(tuple(stop - start for start, stop in local), record["lo"], dtype=np.float32)
        return self.models.evaluate(index, local)

    def raw_box(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Undeblocked float32 values of ``box`` and the block index of every voxel."""
        shape = tuple(stop - start for start, stop in box)
        values = np.empty(shape, dtype=np.float32)
        labels = np.empty(shape, dtype=np.int32)
        parts = []
        for index in self.blocks_touching(box):
            lo = np.maximum(self.origins[index], [b[0] for b in box])
            hi = np.minimum(self.origins[index] + self.sizes[index], [b[1] for b in box])
            local = tuple((int(a - o), int(b - o)) for a, b, o in zip(lo, hi, self.origins[index]))
            target = tuple(slice(int(a - b[0]), int(c - b[0])) for a, c, b in zip(lo, hi, box))
            parts.append((index, local, target))
        if len(parts) > 1 and DECODE_THREADS > 1 and math.prod(shape) >= PARALLEL_VOXELS:
            evaluated = _decode_pool().map(lambda part: self.evaluate_block(part[0], part[1]), parts)
        else:
            evaluated = (self.evaluate_block(index, local) for index, local, _ in parts)
        for (index, _, target), block_values in zip(parts, evaluated):
            values[target] = block_values
            labels[target] = index
        return values, labels

    def _grown(self, box: Box) -> Box:
        """``box`` grown by one voxel at each end whose border voxel lies beside a block face.

        The filter changes a voxel beside a face using both its neighbours along that axis, so such a
        border voxel needs one more voxel outside the box; voxels away from faces need nothing. The
        faces are those of every block the grown box touches, found again until nothing changes: the
        voxels added along one axis belong to neighbouring blocks whose own faces, along the other
        axes, the later filter passes read across (the corners where blocks meet).
        """
        grown = box
        for _ in range(len(box) + 1):
            touching = self.blocks_touching(grown)
            wider = []
            for axis, (start, stop) in enumerate(box):
                origins = self.origins[touching, axis]
                faces = set(origins.tolist()) | set((origins + self.sizes[touching, axis]).tolist())
                grow_start = start > 0 and (start in faces or start + 1 in faces)
                grow_stop = stop < self.header.shape[axis] and (stop - 1 in faces or stop in faces)
                wider.append((start - int(grow_start), stop + int(grow_stop)))
            if tuple(wider) == grown:
                break
            grown = tuple(wider)
        return grown

    def decode_box(self, box: Box, deblocking: bool = True) -> np.ndarray:
        """Float32 values of ``box`` in data units, deblocked and loop-filtered (models 13 and 14)
        unless asked otherwise (then the raw tiles)."""
        if not deblocking:
            return self.raw_box(box)[0]
        filters = self._loop_filters(box)
        if not filters:
            return self._deblocked(box)
        # the filters read deblocked values up to their radius beyond the box, the nearest inside
        # the volume beyond its border
        reach = max(f.radius for _, f in filters)
        outer = tuple((max(0, a - reach), min(int(s), b + reach))
                      for (a, b), s in zip(box, self.header.shape))
        padded = np.pad(self._deblocked_window(outer), [(reach - (a - lo), reach - (hi - b))
                                                 for (a, b), (lo, hi) in zip(box, outer)], mode="edge")
        out = padded[tuple(slice(reach, reach + b - a) for a, b in box)].copy()
        low, span = float(self.header.value_min), float(self.header.value_max - self.header.value_min)
        first, last = np.array([a for a, _ in box]), np.array([b for _, b in box])
        for index, loop_filter in filters:
            start = np.maximum(self.origins[index], first) - first
            stop = np.minimum(self.origins[index] + self.sizes[index], last) - first
            region = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
            out[region] = filter_region(padded, reach, region, loop_filter, low, span)
        return out

    def _loop_filters(self, box: Box) -> list[tuple[int, LoopFilter]]:
        """The latent tiles touching ``box`` that have a loop filter, with it."""
        found = []
        for index in self.blocks_touching(box):
            if self.header.blocks[index]["kind"] == KIND_GRID:
                loop_filter = self.models.loop_filter(index)
                if loop_filter is not None:
                    found.append((index, loop_filter))
        return found

    def _deblocked_window(self, outer: Box) -> np.ndarray:
        """The deblocked values of a loop filter's window: a thin one (a viewer's plane and its
        neighbours along axis 0) plane by plane, each plane kept a while, so that scrolling to the next
        plane decodes one new plane instead of the 2r + 1 the filter reads; others in one piece."""
        (start, stop), rest = outer[0], tuple(outer[1:])
        if stop - start > THIN_WINDOW:
            return self._deblocked(outer)
        with self._planes_lock:
            planes: dict[int, np.ndarray] = {}
            for z in range(start, stop):
                if (z, rest) in self._planes:
                    self._planes.move_to_end((z, rest))
                    planes[z] = self._planes[(z, rest)]
        z = start
        while z < stop:  # each run of missing planes decoded in one piece (its blocks transformed once)
            if z in planes:
                z += 1
                continue
            end = z
            while end < stop and end not in planes:
                end += 1
            run = self._deblocked(((z, end), *rest))
            with self._planes_lock:
                for offset in range(end - z):
                    plane = run[offset:offset + 1].copy()
                    plane.flags.writeable = False
                    planes[z + offset] = plane
                    if (z + offset, rest) not in self._planes:
                        self._planes[(z + offset, rest)] = plane
                        self._planes_bytes += plane.nbytes
                while self._planes_bytes > PLANE_CACHE_BYTES and len(self._planes) > 1:
                    self._planes_bytes -= self._planes.popitem(last=False)[1].nbytes
            z = end
        planes_list = [planes[z] for z in range(start, stop)]
        return np.concatenate(planes_list, axis=0)

    def _deblocked(self, box: Box) -> np.ndarray:
        grown = self._grown(box)
        values, labels = self.raw_box(grown)
        smoothed = deblock(values, labels, np.isin(self.header.blocks["kind"], EXACT_KINDS))
        crop = tuple(slice(s - g[0], e - g[0]) for (s, e), g in zip(box, grown))
        return smoothed[crop]

    def decode(self, box: Box, deblocking: bool = True) -> np.ndarray:
        """``box`` in the file's dtype, clipped to its value range: what every reader returns."""
        with np.errstate(all="ignore"):  # a hostile file may overflow float32; to_dtype clips
            values = self.decode_box(box, deblocking)
        header = self.header
        return to_dtype(values, header.dtype, ValueRange(header.value_min, header.value_max))


def full_box(shape: Sequence[int]) -> Box:
    return tuple((0, int(s)) for s in shape)


def decode_contents(contents: SciContents, box: Box | None = None, deblocking: bool = True,
                    device: str = "cpu") -> np.ndarray:
    """Decode a box (default: all) of validated contents to the original dtype and range."""
    return VolumeDecoder(contents, device).decode(box or full_box(contents.header.shape), deblocking)


def decode_block(contents: SciContents, index: int, device: str = "cpu") -> np.ndarray:
    """One block's raw network output (float32, data units), without deblocking."""
    decoder = VolumeDecoder(contents, device)
    size = decoder.sizes[index]
    return decoder.evaluate_block(index, tuple((0, int(s)) for s in size))
