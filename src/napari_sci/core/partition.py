"""Adaptive partitioning: choose the tree's leaves by an integer linear program (paper §3.1, Eq. 2).

maximise   Σ_n  x_n · D_n · |x_n| / |x|
subject to Σ_n  x_n ≤ a_max
           Σ_{n ∈ path(f)} x_n = 1   for every finest node f   (each voxel in exactly one block)
           x_n ∈ {0, 1}

PuLP formulates it and a solver solves it (HiGHS by default, see ``ilp_solver.py``), started from a
greedy cut; the solver is a parameter so tests and users can inject another. A tiny tie-break term
prefers fewer blocks when several cuts score the same (e.g. constant regions, where every sub-block has
D = 1). :func:`best_cut_bruteforce` is the exact reference for small trees.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import numpy as np
import pulp

from napari_sci.base.config import PartitionConfig
from napari_sci.base.octree import BlockTree, BoxGeometry
from napari_sci.core.ilp_solver import SolverFactory, default_solver
from napari_sci.core.spectrum import tree_concentrations
from napari_sci.errors import SciConfigError

TIE_BREAK = 1e-7

@dataclass(frozen=True)
class Block(BoxGeometry):
    """A chosen leaf: its node id, geometry and spectrum concentration."""

    node: int
    level: int
    origin: tuple[int, ...]
    size: tuple[int, ...]
    concentration: float


@dataclass(frozen=True)
class Partition:
    """The chosen blocks, the tree they come from, and D of every tree node."""

    tree: BlockTree
    blocks: tuple[Block, ...]
    concentrations: np.ndarray
    method: str
    objective: float


def cut_objective(tree: BlockTree, concentrations: np.ndarray, node_ids: list[int]) -> float:
    """Volume-weighted mean D of a cut, the quantity the ILP maximises (without the tie-break)."""
    total = float(np.prod(tree.shape, dtype=np.int64))
    return float(sum(concentrations[i] * tree.nodes[i].voxels / total for i in node_ids))


def _weights(tree: BlockTree, concentrations: np.ndarray) -> list[float]:
    total = float(np.prod(tree.shape, dtype=np.int64))
    return [float(concentrations[n.id]) * n.voxels / total - TIE_BREAK for n in tree.nodes]


def _binary(problem: pulp.LpProblem, name: str) -> pulp.LpVariable:
    """A 0/1 variable attached to ``problem`` (PuLP >= 3.3 API, falling back for older PuLP)."""
    if hasattr(problem, "add_variable"):
        return problem.add_variable(name, cat=pulp.LpBinary)
    return pulp.LpVariable(name, cat=pulp.LpBinary)


def greedy_cut(tree: BlockTree, weights: list[float], max_blocks: int) -> list[int]:
    """A good feasible cut, the ILP's starting point: split the most rewarding leaf while it fits.

    A split's reward (children's weights minus the node's) never changes, and the cut only grows, so
    a split that does not fit now never will: one pass over a heap.
    """
    cut = {0}
    gains = [(-(sum(weights[c] for c in n.children) - weights[n.id]), n.id) for n in tree.nodes[:1]
             if n.children]
    while gains:
        gain, node = heapq.heappop(gains)
        children = tree.nodes[node].children
        if gain >= 0 or len(cut) - 1 + len(children) > max_blocks:
            continue
        cut.remove(node)
        cut.update(children)
        for c in children:
            child = tree.nodes[c]
            if child.children:
                heapq.heappush(gains, (-(sum(weights[g] for g in child.children) - weights[c]), c))
    return sorted(cut)


def solve_cut_ilp(tree: BlockTree, concentrations: np.ndarray, max_blocks: int,
                  time_limit: float = 30.0, solver: SolverFactory = default_solver) -> list[int]:
    """Node ids of the optimal cut with at most ``max_blocks`` leaves (Eq. 2), solved with PuLP."""
    if len(tree) == 1:
        return [0]
    weights = _weights(tree, concentrations)
    problem = pulp.LpProblem("sci_partition", pulp.LpMaximize)
    x = [_binary(problem, f"x{n.id}") for n in tree.nodes]
    for i in greedy_cut(tree, weights, max_blocks):
        x[i].setInitialValue(1)
    problem += pulp.lpSum(w * v for w, v in zip(weights, x))
    problem += pulp.lpSum(x) <= max_blocks, "at_most_a_max_leaves"
    for f in tree.finest:
        problem += pulp.lpSum(x[i] for i in tree.path_to_root(f)) == 1, f"one_leaf_on_path_{f}"
    status = problem.solve(solver(time_limit))
    chosen = [n.id for n in tree.nodes if (x[n.id].value() or 0.0) > 0.5]
    if pulp.LpStatus[status] not in ("Optimal", "Not Solved") or not tree.is_tiling(chosen):
        # The root alone is always feasible; never return a cut that does not tile the volume.
        return [0]
    return chosen


def _enumerate_cuts(tree: BlockTree, node_id: int, limit: int) -> list[list[int]]:
    node = tree.nodes[node_id]
    cuts = [[node_id]]
    if node.children:
        per_child = [_enumerate_cuts(tree, c, limit) for c in node.children]
        for combo in itertools.product(*per_child):
            merged = [i for part in combo for i in part]
            if len(merged) <= limit:
                cuts.append(merged)
    return cuts


def best_cut_bruteforce(tree: BlockTree, concentrations: np.ndarray,
                        max_blocks: int) -> list[int]:
    """Exact optimum by enumerating every cut; only for small trees (tests)."""
    weights = _weights(tree, concentrations)
    cuts = _enumerate_cuts(tree, 0, max_blocks)
    return max(cuts, key=lambda cut: sum(weights[i] for i in cut))


def equal_cut(tree: BlockTree, max_blocks: int) -> list[int]:
    """The deepest complete tree level with at most ``max_blocks`` nodes (equidistant blocks).

    A level is complete when it tiles the volume, i.e. no node above it stopped splitting early.
    """
    best = [0]
    for level in range(1, tree.depth + 1):
        ids = tree.level(level)
        if len(ids) > max_blocks or not tree.is_tiling(ids):
            break
        best = ids
    return best


@dataclass(frozen=True)
class TreeAnalysis:
    """The block tree over a volume and D of every node: the costly part, reusable across budgets."""

    tree: BlockTree
    concentrations: np.ndarray


def analyse_tree(normalised: np.ndarray, config: PartitionConfig) -> TreeAnalysis:
    """Build the tree over ``normalised`` (values in [0, 1]) and compute D per node (Eq. 1)."""
    depth = 0 if config.method == "none" else config.max_depth
    tree = BlockTree(normalised.shape, depth, config.min_leaf_side)
    return TreeAnalysis(tree, tree_concentrations(normalised, [n.slices for n in tree.nodes], config.top_m))


def partition_volume(normalised: np.ndarray, config: PartitionConfig, max_blocks: int | None = None,
                     solver: SolverFactory = default_solver,
                     analysis: TreeAnalysis | None = None) -> Partition:
    """Choose the leaves of the tree over ``normalised`` (values in [0, 1]).

    ``max_blocks`` overrides ``config.max_blocks`` when the size budget affords fewer blocks;
    ``analysis`` (from :func:`analyse_tree` with the same config) skips recomputing D.
    """
    limit = config.max_blocks if max_blocks is None else max_blocks
    return choose_blocks(analysis or analyse_tree(normalised, config), config, limit, solver)


def choose_blocks(analysis: TreeAnalysis, config: PartitionConfig, limit: int,
                  solver: SolverFactory = default_solver) -> Partition:
    """The leaves of an analysed tree: the ILP (adaptive), the equal cut, or the root alone."""
    if limit < 1:
        raise SciConfigError(f"at least one block is needed, got max_blocks={limit}")
    tree, concentrations = analysis.tree, analysis.concentrations
    if config.method == "adaptive":
        chosen = solve_cut_ilp(tree, concentrations, limit, config.time_limit, solver)
    elif config.method == "equal":
        chosen = equal_cut(tree, limit)
    else:
        chosen = [0]
    blocks = tuple(
        Block(i, tree.nodes[i].level, tree.nodes[i].origin, tree.nodes[i].size,
              float(concentrations[i]))
        for i in sorted(chosen))
    return Partition(tree, blocks, concentrations, config.method,
                     cut_objective(tree, concentrations, [b.node for b in blocks]))
