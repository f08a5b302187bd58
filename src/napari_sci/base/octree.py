"""Block geometry: the 2^N-ary tree over a volume of any shape.

The split rule and the breadth-first node numbering are part of the file format (docs/format.md,
"The block tree"): a ``.sci`` file stores node ids, and the reader rebuilds the same tree.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from napari_sci.errors import SciConfigError

MAX_TREE_NODES = 400_000


class BoxGeometry:
    """What a box with an ``origin`` and a ``size`` (voxels per axis) offers: a tree node, a chosen
    block. A mixin without fields, so each dataclass keeps its own field order."""

    origin: tuple[int, ...]
    size: tuple[int, ...]

    @property
    def voxels(self) -> int:
        return int(np.prod(self.size, dtype=np.int64))

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(o, o + s) for o, s in zip(self.origin, self.size))


@dataclass(frozen=True)
class Node(BoxGeometry):
    """One box of the tree: where it starts, how big it is, and how it relates to the others."""

    id: int
    level: int
    origin: tuple[int, ...]
    size: tuple[int, ...]
    parent: int
    children: tuple[int, ...] = ()


def _split_axis(origin: int, size: int, split: bool) -> list[tuple[int, int]]:
    if not split:
        return [(origin, size)]
    first = (size + 1) // 2
    return [(origin, first), (origin + first, size - first)]


class BlockTree:
    """All nodes of the tree, in the id order the file format fixes.

    Parameters
    ----------
    shape
        Volume shape (any positive sizes, 2D or 3D).
    max_depth
        Levels below the root.
    min_leaf_side
        An axis is split only while its size is at least twice this.
    """

    def __init__(self, shape: tuple[int, ...], max_depth: int, min_leaf_side: int) -> None:
        if max_depth < 0 or min_leaf_side < 1:
            raise SciConfigError(f"invalid tree: max_depth={max_depth}, min_leaf_side={min_leaf_side}")
        bound = sum((2 ** len(shape)) ** level for level in range(max_depth + 1))
        if bound > MAX_TREE_NODES:
            raise SciConfigError(f"a tree of depth {max_depth} over {len(shape)}D could have {bound} "
                                 f"nodes; at most {MAX_TREE_NODES} are allowed")
        self.shape = tuple(int(s) for s in shape)
        self.max_depth = max_depth
        self.min_leaf_side = min_leaf_side
        self.nodes: tuple[Node, ...] = self._build()

    def _build(self) -> tuple[Node, ...]:
        nodes = [Node(0, 0, (0,) * len(self.shape), self.shape, -1)]
        children: list[list[int]] = [[]]
        index = 0
        while index < len(nodes):
            node = nodes[index]
            splits = [s >= 2 * self.min_leaf_side for s in node.size]
            if node.level < self.max_depth and any(splits):
                parts = [_split_axis(o, s, f) for o, s, f in zip(node.origin, node.size, splits)]
                for combo in itertools.product(*parts):
                    child_id = len(nodes)
                    nodes.append(Node(child_id, node.level + 1, tuple(c[0] for c in combo),
                                      tuple(c[1] for c in combo), node.id))
                    children.append([])
                    children[node.id].append(child_id)
            index += 1
        return tuple(Node(n.id, n.level, n.origin, n.size, n.parent, tuple(children[n.id]))
                     for n in nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def finest(self) -> tuple[int, ...]:
        """Ids of the nodes without children: the bottom of every root-to-finest path."""
        return tuple(n.id for n in self.nodes if not n.children)

    @cached_property
    def depth(self) -> int:
        """Deepest level actually present (may be below ``max_depth`` for small volumes)."""
        return max(n.level for n in self.nodes)

    def path_to_root(self, node_id: int) -> list[int]:
        path = [node_id]
        while self.nodes[path[-1]].parent >= 0:
            path.append(self.nodes[path[-1]].parent)
        return path

    def level(self, level: int) -> list[int]:
        return [n.id for n in self.nodes if n.level == level]

    def is_tiling(self, node_ids: list[int] | tuple[int, ...]) -> bool:
        """True when the nodes cover every voxel exactly once (one chosen node on every path)."""
        chosen = set(node_ids)
        if len(chosen) != len(node_ids) or not all(0 <= i < len(self.nodes) for i in chosen):
            return False
        return all(sum(1 for n in self.path_to_root(f) if n in chosen) == 1 for f in self.finest)
