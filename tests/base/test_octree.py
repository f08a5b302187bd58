import numpy as np
import pytest

from napari_sci.base.octree import BlockTree


def coverage(tree: BlockTree, ids) -> np.ndarray:
    count = np.zeros(tree.shape, dtype=int)
    for i in ids:
        count[tree.nodes[i].slices] += 1
    return count


@pytest.mark.parametrize("shape", [(37, 50, 23), (64, 64, 64), (16, 256, 256), (5, 9), (100, 3)])
def test_every_level_and_finest_nodes_tile(shape):
    tree = BlockTree(shape, max_depth=3, min_leaf_side=4)
    assert (coverage(tree, tree.finest) == 1).all()
    assert tree.is_tiling(list(tree.finest))
    assert tree.is_tiling([0])


def test_split_rule_matches_the_spec():
    tree = BlockTree((9, 20, 8), max_depth=1, min_leaf_side=4)
    # axis 0 (9 >= 8) and axis 1 (20 >= 8) split, axis 2 (8 >= 8) split: 8 children, ceil half first
    children = [tree.nodes[c] for c in tree.nodes[0].children]
    assert len(children) == 8
    assert children[0].origin == (0, 0, 0)
    assert children[0].size == (5, 10, 4)
    assert children[1].origin == (0, 0, 4)
    assert children[1].size == (5, 10, 4)
    assert children[-1].origin == (5, 10, 4)
    assert children[-1].size == (4, 10, 4)
    assert [c.id for c in children] == list(range(1, 9))


def test_axes_too_short_are_not_split():
    tree = BlockTree((6, 64, 64), max_depth=2, min_leaf_side=4)
    assert len(tree.nodes[0].children) == 4  # z has 6 < 8 voxels
    assert all(tree.nodes[c].size[0] == 6 for c in tree.nodes[0].children)


def test_is_tiling_detects_gaps_and_overlaps():
    tree = BlockTree((16, 16, 16), max_depth=2, min_leaf_side=2)
    kids = list(tree.nodes[0].children)
    assert tree.is_tiling(kids)
    assert not tree.is_tiling(kids[:-1])          # gap
    assert not tree.is_tiling([*kids, 0])          # overlap with the root
    assert not tree.is_tiling([*kids, kids[0]])    # duplicate
    assert not tree.is_tiling([*kids[1:], 10_000])  # unknown id


def test_depth_zero_is_the_root_only():
    tree = BlockTree((10, 10, 10), max_depth=0, min_leaf_side=1)
    assert len(tree) == 1
    assert tree.finest == (0,)
