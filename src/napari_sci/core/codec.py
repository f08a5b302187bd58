"""The encoder: a volume to ``.sci`` bytes (decoding is in ``decoder.py``).

encode: check volume → budget → partition (ILP) → allocation → fit → decode and measure → serialise.
The file's size is fixed before fitting: the header and block table are paid for out of the budget, and
the weights fill the rest. Decoding needs nothing but the file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from napari_sci.base.config import CompressConfig
from napari_sci.base.networks import BlockNetwork, funnel_first_width, param_count
from napari_sci.base.volume import ValueRange, check_volume, normalised_volume, value_range
from napari_sci.core.allocation import allocate
from napari_sci.core.decoder import decode_contents
from napari_sci.core.events import FitEvent, PartitionDone, StageStarted
from napari_sci.core.fit import as_stop_flag
from napari_sci.core.fit_and_code import FitJob, fit_and_code
from napari_sci.core.grid_encode import (
    affordable_tiles,
    check_tile_sizes,
    fit_and_code_grid,
    resolve_residual,
    resolve_upsampling,
    smallest_grid_file,
)
from napari_sci.core.metrics import Metrics, bits_per_voxel, compression_ratio, evaluate
from napari_sci.core.partition import Block, Partition, TreeAnalysis, choose_blocks, partition_volume
from napari_sci.errors import SciBudgetError, SciCancelledError, SciInputError
from napari_sci.io.container import SciContents, assemble, serialise, write_atomic
from napari_sci.io.format import (
    BLOCK_RECORD,
    KIND_CONSTANT,
    KIND_MEAN,
    KIND_SIREN,
    SciHeader,
    file_overhead,
    grid_model_id,
    stored_header,
)
from napari_sci.io.weights import CODE_BYTES_PER_TENSOR

ANS_TAIL_BYTES = 8  # what an ANS stream costs beyond its symbols, at most


@dataclass(frozen=True)
class EncodeResult:
    """A finished encoding: the file's bytes, what is in it, and how good it is."""

    data: bytes
    contents: SciContents
    metrics: Metrics
    target_bytes: int
    partition: Partition
    networks: tuple[BlockNetwork, ...]
    seconds: dict[str, float]

    @property
    def n_bytes(self) -> int:
        return len(self.data)

    @property
    def bpv(self) -> float:
        return bits_per_voxel(self.n_bytes, self.contents.header.n_voxels)

    @property
    def ratio(self) -> float:
        header = self.contents.header
        return compression_ratio(self.n_bytes, header.n_voxels, header.dtype.itemsize)

    @property
    def n_params(self) -> int:
        return sum(n.params(self.contents.header.ndim, self.contents.header.layers) for n in self.networks)

    def write(self, path: str, overwrite: bool = False) -> None:
        """Write the file atomically (temp file, then rename)."""
        write_atomic(path, self.data, overwrite=overwrite)


@dataclass(frozen=True)
class EncodeDone:
    """Last event of :func:`encode_events`."""

    result: EncodeResult


def network_overhead(config: CompressConfig) -> int:
    """Payload bytes of a network besides its parameters: v2's step/width codes and ANS tail."""
    if config.coding.format_version == 1:
        return 0
    return 2 * CODE_BYTES_PER_TENSOR * config.network.layers + ANS_TAIL_BYTES


def network_bytes(hidden: int, ndim: int, config: CompressConfig) -> int:
    """Expected payload bytes of a funnel network of this hidden width."""
    net = config.network
    params = param_count(ndim, funnel_first_width(hidden, net.fr), hidden, net.layers)
    return network_overhead(config) + math.ceil(config.coding.bytes_per_param * params)


def smallest_file_bytes(ndim: int, config: CompressConfig) -> int:
    """Bytes of the smallest useful file: one block holding the smallest network."""
    return file_overhead(ndim, 1) + network_bytes(config.network.min_hidden, ndim, config)


def affordable_blocks(target: int, ndim: int, config: CompressConfig) -> int:
    """How many blocks the budget affords when each should hold a network of ``useful_hidden``."""
    per_block = (file_overhead(ndim, 1) - file_overhead(ndim, 0)
                 + network_bytes(config.allocation.useful_hidden, ndim, config))
    return max(1, min(config.partition.max_blocks, (target - file_overhead(ndim, 0)) // per_block))


def parameter_budget(target: int, ndim: int, n_blocks: int, n_networks: int,
                     config: CompressConfig) -> int:
    """Parameters the networks may have in total once the header and table are paid for."""
    spare = target - file_overhead(ndim, n_blocks) - n_networks * network_overhead(config)
    return max(0, math.floor(spare / config.coding.bytes_per_param))


def _check_budget(target: int, raw_bytes: int, n_voxels: int, ndim: int,
                  config: CompressConfig, constant: bool) -> None:
    if constant:
        smallest = file_overhead(ndim, 1)
    elif config.model == "grid":
        smallest = smallest_grid_file(ndim, config)
    else:
        smallest = smallest_file_bytes(ndim, config)
    if smallest >= raw_bytes and not constant:
        raise SciBudgetError(
            f"the volume is too small to compress: its raw data is {raw_bytes} bytes but the "
            f"smallest .sci file with a network is {smallest} bytes; store it uncompressed")
    if target >= raw_bytes and not constant:
        raise SciBudgetError(
            f"the target {config.budget.describe()} ({target} bytes) is not smaller than the raw "
            f"volume ({raw_bytes} bytes): nothing to gain; ask for a ratio > 1")
    if target < smallest:
        raise SciBudgetError(
            f"the target {config.budget.describe()} ({target} bytes) is too small; the "
            f"smallest achievable file is {smallest} bytes = "
            f"{bits_per_voxel(smallest, n_voxels):.4g} BPV (ratio {raw_bytes / smallest:.4g})")


def check_budget_for(shape: Sequence[int], dtype: np.dtype, config: CompressConfig) -> int:
    """The target bytes of a (non-constant) volume of this shape, or ``SciBudgetError``, before any of
    its voxels are read: a chunked store checks each of its chunk shapes so first."""
    n_voxels = math.prod(int(s) for s in shape)
    itemsize = np.dtype(dtype).itemsize
    target = config.budget.target_bytes(n_voxels, itemsize)
    _check_budget(target, n_voxels * itemsize, n_voxels, len(shape), config, constant=False)
    return target


def _header(array: np.ndarray, data: ValueRange, spacing: Sequence[float], partition: Partition,
            records: np.ndarray, config: CompressConfig, steps: int, psnr: float,
            section: bytes | None = None) -> SciHeader:
    """The file's header; ``section`` given: a version 3 latent-grid file (SIREN fields set to 1)."""
    if section is not None:
        return SciHeader(
            shape=tuple(array.shape), dtype=array.dtype, spacing=tuple(float(s) for s in spacing),
            value_min=data.low, value_max=data.high, tree_depth=partition.tree.max_depth,
            min_leaf_side=partition.tree.min_leaf_side, layers=config.grid.grid_layers, w0=1.0,
            w0_hidden=1.0, fr=1.0, partition=config.partition.method, allocation="equal",
            max_blocks=config.partition.max_blocks, top_m=config.partition.top_m, steps=steps,
            seed=config.fit.seed, psnr=psnr, blocks=records, version=3,
            model=grid_model_id(config.grid.entropy, config.grid.upsampling_used, config.grid.residual,
                                config.grid.filtered),
            section=section)
    return SciHeader(
        shape=tuple(array.shape), dtype=array.dtype, spacing=tuple(float(s) for s in spacing),
        value_min=data.low, value_max=data.high, tree_depth=partition.tree.max_depth,
        min_leaf_side=partition.tree.min_leaf_side, layers=config.network.layers,
        w0=config.network.w0, w0_hidden=config.network.w0_hidden, fr=config.network.fr,
        partition=config.partition.method, allocation=config.allocation.rule,
        max_blocks=config.partition.max_blocks, top_m=config.partition.top_m, steps=steps,
        seed=config.fit.seed, psnr=psnr, blocks=records, version=config.coding.format_version)


def _block_records(array: np.ndarray, partition: Partition,
                   networks: Sequence[BlockNetwork]) -> np.ndarray:
    records = np.zeros(len(partition.blocks), dtype=BLOCK_RECORD)
    for i, (block, net) in enumerate(zip(partition.blocks, networks)):
        values = array[block.slices]
        records[i]["node"] = block.node
        if net.is_constant:
            exact = bool(np.all(values == values.flat[0]))
            records[i]["kind"] = KIND_CONSTANT if exact else KIND_MEAN
            records[i]["lo"] = records[i]["hi"] = np.float32(np.mean(values, dtype=np.float64))
        else:
            records[i]["kind"] = KIND_SIREN
            records[i]["first_width"], records[i]["hidden_width"] = net.first_width, net.hidden_width
            records[i]["lo"], records[i]["hi"] = np.min(values), np.max(values)
    return records


def worth_a_network(array: np.ndarray, blocks: Sequence[Block], negligible: float) -> list[bool]:
    """Which blocks may get a network: not constant, and not negligible (see AllocationConfig)."""
    sse = np.array([float(np.var(array[b.slices], dtype=np.float64)) * b.voxels for b in blocks])
    total = float(sse.sum())
    return [bool(e > 0 and e >= negligible * total) for e in sse]


def _spacing(array: np.ndarray, spacing: Sequence[float] | None) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * array.ndim
    if len(spacing) != array.ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise SciInputError(f"spacing {tuple(spacing)} must be {array.ndim} positive numbers")
    return tuple(float(s) for s in spacing)


def family_for(config: CompressConfig, data: ValueRange) -> CompressConfig:
    """A constant volume needs no model: it is stored as its value in one constant block (format 2,
    the smallest file any family could write), whichever family was asked for."""
    if data.span == 0 and config.model != "siren":
        return replace(config, model="siren")
    return config


def checked_target(array: np.ndarray, data: ValueRange, config: CompressConfig) -> int:
    """The file size in bytes the budget allows; ``SciBudgetError`` if it cannot be met."""
    n_voxels = int(array.size)
    target = config.budget.target_bytes(n_voxels, array.dtype.itemsize)
    _check_budget(target, n_voxels * array.dtype.itemsize, n_voxels, array.ndim, config,
                  constant=data.span == 0)
    return target


def partition_for_budget(array: np.ndarray, data: ValueRange, target: int, config: CompressConfig,
                         analysis: TreeAnalysis | None = None) -> Partition:
    """The blocks encode chooses: the ILP over the normalised volume, capped by what the budget affords."""
    if config.model == "grid":
        limit = affordable_tiles(target, int(array.size), array.ndim, config)
    else:
        limit = affordable_blocks(target, array.ndim, config)
    if analysis is not None:  # a PSNR search's tries share it: no normalised copy per try
        partition = choose_blocks(analysis, config.partition, limit)
    else:
        partition = partition_volume(normalised_volume(array, data), config.partition, limit)
    if config.model == "grid":
        check_tile_sizes(partition.blocks)
    return partition


def allocate_for_budget(array: np.ndarray, partition: Partition, target: int,
                        config: CompressConfig) -> tuple[BlockNetwork, ...]:
    """Every block's network widths: the bytes left after header and table, shared by the rule."""
    blocks = partition.blocks
    trainable = worth_a_network(array, blocks, config.allocation.negligible)
    total_params = parameter_budget(target, array.ndim, len(blocks), sum(trainable), config)
    return tuple(allocate([b.voxels for b in blocks], [b.concentration for b in blocks], trainable,
                          total_params, array.ndim, config.network, config.allocation.rule))


@dataclass(frozen=True)
class BlockPlan:
    """What encode builds before fitting: the chosen blocks and each one's network."""

    partition: Partition
    networks: tuple[BlockNetwork, ...]
    target_bytes: int
    ndim: int
    layers: int

    @property
    def params(self) -> tuple[int, ...]:
        """Parameters of each block's network (0 for a block stored as a constant or mean)."""
        return tuple(n.params(self.ndim, self.layers) for n in self.networks)


def plan_blocks(volume: np.ndarray, config: CompressConfig,
                analysis: TreeAnalysis | None = None) -> BlockPlan:
    """Partition and allocate exactly as :func:`encode_events` does, without fitting (previews,
    benchmarks)."""
    array = check_volume(volume)
    data = value_range(array)
    config = family_for(config, data)
    target = checked_target(array, data, config)
    partition = partition_for_budget(array, data, target, config, analysis)
    if config.model == "grid":
        networks = tuple(BlockNetwork() for _ in partition.blocks)
    else:
        networks = allocate_for_budget(array, partition, target, config)
    return BlockPlan(partition, networks, target, array.ndim, config.network.layers)


def encode_events(volume: np.ndarray, config: CompressConfig, spacing: Sequence[float] | None = None,
                  stop: object = None, analysis: TreeAnalysis | None = None,
                  ) -> Iterator[FitEvent | EncodeDone]:
    """Encode ``volume``, yielding progress events and finally :class:`EncodeDone`.

    Raises ``SciCancelledError`` when ``stop`` is set during fitting; nothing is written either way
    (call :meth:`EncodeResult.write`). ``analysis`` reuses a tree analysis of this volume.
    """
    started = time.perf_counter()
    array = check_volume(volume)
    voxel_size = _spacing(array, spacing)
    data = value_range(array)
    config = family_for(config, data)
    if config.model == "grid":
        config = resolve_upsampling(config, array)
    ndim = array.ndim
    target = checked_target(array, data, config)
    if config.model == "grid":
        config = resolve_residual(config, ndim, target, array.size)
    yield StageStarted("partition", f"{config.partition.method}, a_max {config.partition.max_blocks}")
    partition = partition_for_budget(array, data, target, config, analysis)
    t_partition = time.perf_counter() - started
    yield PartitionDone(len(partition.blocks), partition.objective, t_partition)
    blocks = partition.blocks
    section: bytes | None = None
    if config.model == "grid":
        networks: tuple[BlockNetwork, ...] = tuple(BlockNetwork() for _ in blocks)
        yield StageStarted("fit", f"{len(blocks)} latent-grid tiles, one λ")
        coded = yield from fit_and_code_grid(array, data, blocks, target, config, stop)
        records, payloads, section, steps = coded.records, coded.payloads, coded.section, coded.steps
    else:
        yield StageStarted("allocate", config.allocation.rule)
        networks = allocate_for_budget(array, partition, target, config)
        records = _block_records(array, partition, networks)
        yield StageStarted("fit", f"{sum(not n.is_constant for n in networks)} networks")
        job = FitJob(array, blocks, networks, records["lo"].astype(np.float64),
                     records["hi"].astype(np.float64), data.span)
        payload_budget = target - file_overhead(ndim, len(blocks))
        payloads, fitted = yield from fit_and_code(job, config, payload_budget, stop)
        steps = fitted.steps
    t_fit = time.perf_counter() - started - t_partition
    yield StageStarted("evaluate", "decoding to measure PSNR and SSIM")
    if as_stop_flag(stop)():
        raise SciCancelledError("compression cancelled before the final evaluation; nothing written")
    header = _header(array, data, voxel_size, partition, records, config, steps, math.nan, section)
    # measured from the contents a reader will get, then the file is serialised once, PSNR included
    draft = assemble(header, payloads, partition.tree)
    metrics = evaluate(array, decode_contents(draft))
    contents = replace(draft, header=stored_header(replace(draft.header, psnr=metrics.psnr_data)))
    seconds = {"partition": t_partition, "fit": t_fit, "total": time.perf_counter() - started}
    result = EncodeResult(serialise(contents.header, contents.payloads), contents, metrics, target,
                          partition, tuple(networks), seconds)
    yield EncodeDone(result)


def encode(volume: np.ndarray, config: CompressConfig, spacing: Sequence[float] | None = None,
           on_event: Callable[[object], None] | None = None, stop: object = None) -> EncodeResult:
    """Encode ``volume``; ``on_event`` receives every progress event."""
    for event in encode_events(volume, config, spacing, stop):
        if isinstance(event, EncodeDone):
            return event.result
        if on_event is not None:
            on_event(event)
    raise AssertionError("encode_events ended without a result")
