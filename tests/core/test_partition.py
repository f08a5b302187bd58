import subprocess
import sys

import numpy as np
import pulp
import pytest

from napari_sci.base.config import PartitionConfig
from napari_sci.base.octree import BlockTree
from napari_sci.core.ilp_solver import default_solver
from napari_sci.core.partition import (
    best_cut_bruteforce,
    cut_objective,
    equal_cut,
    greedy_cut,
    partition_volume,
    solve_cut_ilp,
)


@pytest.mark.parametrize(("shape", "depth"), [((16, 16), 3), ((8, 8, 8), 2), ((12, 7, 9), 2)])
@pytest.mark.parametrize("seed", range(4))
def test_ilp_matches_bruteforce_optimum(shape, depth, seed):
    tree = BlockTree(shape, max_depth=depth, min_leaf_side=2)
    rng = np.random.default_rng(seed)
    d = rng.random(len(tree))
    for a_max in (1, 4, 8, 15, 40):
        ilp = solve_cut_ilp(tree, d, a_max)
        brute = best_cut_bruteforce(tree, d, a_max)
        assert tree.is_tiling(ilp)
        assert len(ilp) <= a_max
        assert cut_objective(tree, d, ilp) == pytest.approx(cut_objective(tree, d, brute), abs=1e-9)


def test_ilp_prefers_fewer_blocks_on_ties():
    tree = BlockTree((16, 16, 16), max_depth=2, min_leaf_side=2)
    assert solve_cut_ilp(tree, np.ones(len(tree)), 50) == [0]


def test_solver_is_injectable():
    calls = []

    def solver(limit):
        calls.append(limit)
        return default_solver(limit)

    tree = BlockTree((8, 8), max_depth=2, min_leaf_side=2)
    solve_cut_ilp(tree, np.linspace(0, 1, len(tree)), 5, time_limit=3.0, solver=solver)
    assert calls == [3.0]


def test_equal_cut_takes_the_deepest_level_that_fits():
    tree = BlockTree((32, 32, 32), max_depth=3, min_leaf_side=4)
    assert len(equal_cut(tree, 50)) == 8
    assert len(equal_cut(tree, 64)) == 64
    assert equal_cut(tree, 7) == [0]


def test_partition_of_real_data(mri):
    normalised = (mri - mri.min()) / np.ptp(mri)
    adaptive = partition_volume(normalised, PartitionConfig(max_blocks=22, max_depth=2, min_leaf_side=4))
    assert adaptive.tree.is_tiling([b.node for b in adaptive.blocks])
    assert 1 < len(adaptive.blocks) <= 22
    # D of the chosen leaves beats the root alone: splitting was worth it
    assert adaptive.objective > adaptive.concentrations[0]
    none = partition_volume(normalised, PartitionConfig(method="none"))
    assert [b.node for b in none.blocks] == [0]
    assert none.blocks[0].size == mri.shape


def test_default_solver_is_highs():
    assert isinstance(default_solver(1.0), pulp.HiGHS)


def test_cbc_is_the_fallback_and_finds_the_same_cut(monkeypatch):
    tree = BlockTree((16, 16), max_depth=3, min_leaf_side=2)
    d = np.random.default_rng(5).random(len(tree))
    highs = solve_cut_ilp(tree, d, 8)
    monkeypatch.setattr(pulp.HiGHS, "available", lambda self: False)
    cbc = default_solver(1.0)
    if not cbc.available():
        pytest.skip("no CBC here: HiGHS is the only solver")
    assert not isinstance(cbc, pulp.HiGHS)
    assert solve_cut_ilp(tree, d, 8) == highs


def test_highs_prints_nothing_on_stdout(tmp_path):
    """HiGHS's banner goes to C-level stdout; it must not reach `compress --json` output."""
    code = ("import numpy as np; from napari_sci.base.octree import BlockTree; "
            "from napari_sci.core.partition import solve_cut_ilp; "
            "t = BlockTree((8, 8), max_depth=2, min_leaf_side=2); "
            "solve_cut_ilp(t, np.linspace(0, 1, len(t)), 5)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""


def test_greedy_start_is_a_feasible_cut():
    tree = BlockTree((32, 32, 32), max_depth=4, min_leaf_side=2)
    weights = list(np.random.default_rng(1).random(len(tree)))
    for limit in (1, 8, 20, 300):
        cut = greedy_cut(tree, weights, limit)
        assert tree.is_tiling(cut)
        assert len(cut) <= limit
