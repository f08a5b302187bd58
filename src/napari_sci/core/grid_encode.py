"""The latent-grid family's part of encode: tiles → rate–distortion fit → coded tiles and section.

The partition's leaves are the tiles. Every tile that is not one constant value gets a latent pyramid;
one λ (equal slope) decides how many bits each gets, so no |x|/D shares are needed: a near-empty tile's
latents simply stay zero. The byte budget is met by steering λ during the fit (``models/grid_fit``),
then checked on the real coded bytes and, if still over, trimmed. When every such tile fits the budget
losslessly (format 3's exact tiles), the file is written that way and nothing is fitted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_sci.base.config import CompressConfig
from napari_sci.base.grid_geometry import MAX_TILE_VOXELS, GridLayout, levels_for
from napari_sci.base.volume import ValueRange
from napari_sci.core.events import FitCancelled, FitEvent, FitProgress, FitStarted, StageStarted
from napari_sci.core.fit import as_stop_flag, resolve_device
from napari_sci.core.grid_residual import BLOCK_CANDIDATES, code_residual, decoded_tiles
from napari_sci.core.loop_filter_fit import FilterTarget, residual_with_filters
from napari_sci.core.metrics import psnr_from_mse
from napari_sci.core.partition import Block
from napari_sci.errors import SciCancelledError, SciInputError
from napari_sci.io.exact_tiles import encode_exact, exact_dtype
from napari_sci.io.format import BLOCK_RECORD, KIND_CONSTANT, KIND_EXACT, KIND_GRID, file_overhead
from napari_sci.io.latent_context import ContextModel, refine_context_model
from napari_sci.io.latents import GridSection
from napari_sci.io.loop_filter import pack_choice
from napari_sci.io.residual import SECTION_BYTES as RESIDUAL_SECTION_BYTES
from napari_sci.io.residual import WRITTEN_CODING, ResidualModel, join_payload
from napari_sci.io.weights import TensorCode
from napari_sci.models import grid_quant
from napari_sci.models.grid import synthesise
from napari_sci.models.grid_fit import GridStep, GridTrainer, choose_upsampling, fit_grid

SECTION_FIXED_BYTES = 7               # the model section's fields before the coded synthesis
SYNTHESIS_BITS_GUESS = 5              # bits a synthesis parameter is expected to cost, before it is coded
TILE_TAIL_BYTES = 4                   # an ANS stream's last word, at most
DISTORTION_SAMPLES = 1 << 16          # voxels that score the synthesis' quantisation steps


@dataclass(frozen=True)
class GridCoded:
    """What the grid family hands back to encode: records, payloads, the model section, the fit."""

    records: np.ndarray
    payloads: list[bytes]
    section: bytes
    steps: int
    seconds: float
    lam: float
    zeroed: int


RESIDUAL_FROM_BPV = {"bspline": 0.02, "linear": 0.04}  # ``auto`` adds the residual layer from this budget
RESIDUAL_LEAST_BPV = 0.01  # and leaves it (its model and streams) at least this much of the budget


def resolve_residual(config: CompressConfig, ndim: int, target_bytes: int, n_voxels: int) -> CompressConfig:
    """``residual="auto"`` made ``dct`` or ``none`` for this volume and budget (the file's model id
    follows it; the upsampling must be resolved first): the layer pays from 0.04 BPV (session 26: +0.6
    to +3.5 dB at 0.25 BPV on the CT, light-sheet crop and MRI; session 27, with models 9 and 10: +0.3
    to +1.0 dB at 0.1 BPV on all three), beside B-spline latents from 0.02 (session 30, fits at 0.02
    BPV: the MRI 30.01 and 30.06 dB against 29.63 with latents alone; the CT and the light-sheet crop,
    linear, −0.49 and −0.41), and is for 3-D volumes."""
    grid = config.grid
    if grid.residual != "auto":
        return config
    # bytes as a Budget counts them (rounded down): "--bpv 0.02" gives 0.019997 BPV of 2^20 voxels
    enough = target_bytes >= int(RESIDUAL_FROM_BPV[grid.upsampling_used] * n_voxels / 8)
    layered = dataclasses.replace(config, grid=dataclasses.replace(grid, residual="dct"))
    # a small volume's budget may not hold the residual's model (~450 bytes) beside the latents
    room = target_bytes - RESIDUAL_LEAST_BPV * n_voxels / 8 >= smallest_grid_file(ndim, layered)
    wanted = ndim == 3 and grid.entropy == "context" and enough and room
    return layered if wanted else dataclasses.replace(config, grid=dataclasses.replace(grid, residual="none"))


def resolve_upsampling(config: CompressConfig, volume: np.ndarray) -> CompressConfig:
    """``upsampling="auto"`` made ``bspline`` or ``linear`` for this volume (the file's model id follows
    it): the B-spline with the context models where it fits the volume clearly better."""
    grid = config.grid
    if grid.upsampling != "auto":
        return config
    choice = choose_upsampling(volume) if grid.context_coded else "linear"
    return dataclasses.replace(config, grid=dataclasses.replace(grid, upsampling=choice))


def layout_of(config: CompressConfig) -> GridLayout:
    grid = config.grid
    return GridLayout(grid.levels, grid.grid_hidden, grid.grid_layers, grid.upsampling_used)


def section_overhead(config: CompressConfig) -> int:
    """Expected bytes of the model section: its fixed fields (and the context model's three or seven
    bytes a level) and the synthesis, coded at about ``SYNTHESIS_BITS_GUESS`` bits a parameter (the
    real figure exists only after training)."""
    grid = config.grid
    context = ContextModel.packed_size(grid.levels, grid.predicts_means) if grid.context_coded else 0
    residual = RESIDUAL_SECTION_BYTES[WRITTEN_CODING] if grid.residual == "dct" else 0
    # the synthesis' size does not depend on the upsampling, which ``auto`` leaves open until the
    # volume is seen (budget checks run before)
    params = GridLayout(grid.levels, grid.grid_hidden, grid.grid_layers).params()
    return SECTION_FIXED_BYTES + context + residual + -(-params * SYNTHESIS_BITS_GUESS // 8) + 16


def latent_budget(config: CompressConfig, ndim: int, target: int, n_voxels: int) -> int:
    """The file bytes the latents are fitted to beside a residual layer: min(residual_grid_bpv,
    latent_share × the budget, what leaves the residual layer ``RESIDUAL_LEAST_BPV``), never below the
    smallest latent file; the residual gets the rest. These bytes include the file's overhead, and with
    it the residual's model (~450 bytes), so the last term adds that model back: the layer — model and
    streams — keeps 0.01 BPV (without it, the light-sheet crop at 0.02 BPV kept 98 bytes of latents).
    It binds below 0.04 BPV only (with the default share)."""
    grid = config.grid
    return min(target, max(smallest_grid_file(ndim, config), int(min(
        grid.residual_grid_bpv_used * n_voxels / 8, grid.latent_share * target,
        target - RESIDUAL_LEAST_BPV * n_voxels / 8 + RESIDUAL_SECTION_BYTES[WRITTEN_CODING]))))


def smallest_grid_file(ndim: int, config: CompressConfig) -> int:
    """Bytes of the smallest file of this family: one tile whose latents are all zero."""
    return file_overhead(ndim, 1, section_overhead(config)) + config.grid.levels


MIN_TILE_VOXELS = 1 << 15  # smaller tiles cost more in per-tile steps and side information than they give


def affordable_tiles(target: int, n_voxels: int, ndim: int, config: CompressConfig) -> int:
    """Tiles the budget affords (each with ~64 bytes of latents at least), each of ≥ 32k voxels."""
    per_tile = file_overhead(ndim, 1) - file_overhead(ndim, 0) + config.grid.levels + 64
    spare = target - file_overhead(ndim, 0, section_overhead(config))
    limit = min(config.partition.max_blocks, config.grid.max_tiles, n_voxels // MIN_TILE_VOXELS)
    return max(1, min(limit, spare // per_tile))


def check_tile_sizes(blocks: Sequence[Block]) -> None:
    """Refuse, before fitting, a partition with a tile larger than format 3 allows."""
    largest = max(b.voxels for b in blocks)
    if largest > MAX_TILE_VOXELS:
        raise SciInputError(
            f"a latent-grid tile may hold at most {MAX_TILE_VOXELS} voxels but this partition has one of "
            f"{largest}; allow more tiles (--max-tiles, --max-blocks) or a deeper tree (--depth)")


def tile_records(array: np.ndarray, blocks: Sequence[Block]) -> np.ndarray:
    """A constant tile is stored as its value (kind 0); every other tile is a latent pyramid (kind 3)."""
    records = np.zeros(len(blocks), dtype=BLOCK_RECORD)
    for i, block in enumerate(blocks):
        values = array[block.slices]
        records[i]["node"] = block.node
        if bool(np.all(values == values.flat[0])):
            records[i]["kind"] = KIND_CONSTANT
            records[i]["lo"] = records[i]["hi"] = np.float32(values.flat[0])
        else:
            records[i]["kind"] = KIND_GRID
            records[i]["lo"], records[i]["hi"] = np.min(values), np.max(values)
    return records


def untrained_section(config: CompressConfig) -> bytes:
    """The model section of a file whose tiles need no synthesis (all exact or constant): zero
    weights, zero context slopes."""
    layout = layout_of(config)
    context = (ContextModel.zeros(layout.levels, config.grid.predicts_means) if config.grid.context_coded
               else None)
    zeros = [np.zeros(n) for n in layout.tensor_sizes()]
    synthesis = grid_quant.synthesis_payload(zeros, [TensorCode(0, 0)] * len(zeros), layout)
    residual = ResidualModel.empty() if config.grid.residual == "dct" else None
    return GridSection(layout, 0.0, synthesis, 1.0, context, residual, config.grid.filtered).pack()


def exact_coding(array: np.ndarray, blocks: Sequence[Block], records: np.ndarray, tiles: Sequence[int],
                 target: int, config: CompressConfig) -> GridCoded | None:
    """Every non-constant tile stored losslessly (kind 4), when that file fits the budget; else
    ``None``. ``tiles`` are the indices of the non-constant tiles. A sparse volume can cost less
    exactly than any fit of it: the neuron crop, 99.7 % zeros, takes 0.029 BPV losslessly, where the
    latents reached 51 dB at 0.1 BPV."""
    if not tiles or not config.grid.exact_tiles or not exact_dtype(array.dtype):
        return None
    section = untrained_section(config)
    room = target - file_overhead(array.ndim, len(blocks), len(section))
    payloads = [b""] * len(blocks)
    for i in tiles:
        payload = encode_exact(array[blocks[i].slices], limit=room)
        if payload is None:
            return None
        payloads[i] = payload
        room -= len(payload)
    exact = records.copy()
    exact["kind"][tiles] = KIND_EXACT
    return GridCoded(exact, payloads, section, 0, 0.0, 0.0, 0)


def _progress(event: GridStep) -> FitProgress:
    """The family's step report as the pipeline's event (PSNR over the data range: values are
    normalised to it, so the peak is 1)."""
    return FitProgress(event.step, event.total, event.loss, psnr_from_mse(event.mse, 1.0), event.elapsed,
                       event.lr)


def integer_levels(array: np.ndarray, data: ValueRange) -> int | None:
    """How many grey-level steps the data range spans, for an integer volume whose range is whole
    (what rounding to the dtype can be measured against); ``None`` otherwise."""
    whole = data.span == int(data.span) and data.low == int(data.low)
    return int(data.span) if np.issubdtype(array.dtype, np.integer) and whole and data.span >= 1 else None


def _synthesis_distortion(trainer: GridTrainer, latents: list[list[np.ndarray]], step: float,  # type: ignore[no-untyped-def]
                          seed: int, levels: int | None = None):
    """A function scoring dequantised synthesis tensors by their MSE on a fixed voxel sample — after the
    reader's clip and, for an integer volume of ``levels`` + 1 grey levels, its rounding: a sparse
    volume's background a fraction of a level off in floats decodes a whole level off (the neuron crop
    at 0.02 BPV: 8.5 % of its zeros decoded 1–5, 44 % of the file's squared error)."""
    packed = trainer.latents
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    count = min(DISTORTION_SAMPLES, packed.n_voxels)
    with torch.no_grad():
        sample = packed.sample(count, generator)
        flat = packed.pack([[g.astype(np.float32) * np.float32(step) for g in tile] for tile in latents])
        feats = packed.features(flat, sample).cpu().numpy()
        goal = trainer.target[sample.flat].cpu().numpy()
    layout = trainer.layout

    def score(tensors: list[np.ndarray]) -> float:
        decoded = np.clip(synthesise(feats, tensors, layout), 0.0, 1.0)
        if levels:
            decoded = np.rint(decoded * levels) / levels
        return float(np.mean((decoded - goal) ** 2))

    return score


def fit_and_code_grid(array: np.ndarray, data: ValueRange, blocks: Sequence[Block], target: int,
                      config: CompressConfig, stop: object = None,
                      ) -> Generator[FitEvent, None, GridCoded]:
    """Fit the tiles of ``blocks`` to ``target`` file bytes; yield progress, return the coded parts."""
    stopped = as_stop_flag(stop)
    config = resolve_upsampling(config, array)  # encode has done both: idempotent
    config = resolve_residual(config, array.ndim, target, array.size)
    layout = layout_of(config)
    residual = config.grid.residual == "dct"
    if residual and array.ndim != 3:
        raise SciInputError(f"the residual layer (--residual {config.grid.residual}) is for 3-D volumes; "
                            f"this one is {array.ndim}-D")
    records = tile_records(array, blocks)
    tiles = [i for i in range(len(blocks)) if records[i]["kind"] == KIND_GRID]
    lossless = exact_coding(array, blocks, records, tiles, target, config)
    if lossless is not None:
        yield StageStarted("quantise", "every tile fits the budget losslessly: stored exactly, no fit")
        return lossless
    if not tiles:  # every tile holds one value: nothing to fit
        yield StageStarted("quantise", "every tile is constant: stored as its value, no fit")
        return GridCoded(records, [b""] * len(blocks), untrained_section(config), 0, 0.0, 0.0, 0)
    whole_target = target
    if residual:
        target = latent_budget(config, array.ndim, target, array.size)
    filtered = config.grid.filtered
    # each tile's u32 latent length (models 7–14) and loop filter choice (models 13 and 14)
    length_fields = (4 + filtered) * len(tiles) if residual else 0
    span = data.span if data.span > 0 else 1.0
    normalised = ((array.astype(np.float32) - np.float32(data.low)) / np.float32(span)).astype(np.float32)
    device = resolve_device(config.fit.device)
    trainer = GridTrainer(normalised, [blocks[i].slices for i in tiles], layout, config.grid,
                          config.fit.seed, device)
    ndim = array.ndim
    # the λ controller steers the latents' entropy: everything else the file will hold comes off first
    # (container, expected model section, each tile's scale codes and ANS tail)
    not_latents = file_overhead(ndim, len(blocks), section_overhead(config)) + length_fields + sum(
        levels_for(blocks[i].size, layout.levels) + TILE_TAIL_BYTES for i in tiles)
    latent_bits = max(8.0, (target - not_latents) * 8.0)
    n_latents = trainer.latents.numel()
    yield FitStarted(config.fit.steps, len(blocks), len(tiles), n_latents + layout.params(), 1,
                     str(device), config.fit.time_limit)
    run = fit_grid(trainer, config.fit.steps, latent_bits, config.fit.time_limit,
                   stopped, config.fit.report_every)
    try:
        while True:
            event = next(run)
            yield _progress(event)
    except StopIteration as finished:
        state = finished.value
    if state.reason == "cancelled":
        yield FitCancelled(state.steps, state.elapsed)
        raise SciCancelledError(f"compression cancelled at step {state.steps}; nothing written")
    yield StageStarted("quantise", "fitting the latent step to the budget, coding the synthesis")
    raw = state.latents.tile_arrays()
    context = None
    if state.latents.context:  # the learned slopes, refined on the real code length of the latents
        context = refine_context_model(grid_quant.latents_at(raw, 1.0), state.latents.context_model())
    # the coded tile payloads (scale codes and tails included) must fit beside container and section
    container = file_overhead(ndim, len(blocks), section_overhead(config)) + length_fields
    step, latents, coded = grid_quant.fit_step_to_budget(raw, target, container, context=context)
    if stopped():
        raise SciCancelledError("compression cancelled while coding; nothing written")
    distortion = _synthesis_distortion(trainer, latents, step, config.fit.seed, integer_levels(array, data))
    codes = grid_quant.choose_synthesis_steps(state.synthesis, distortion, state.lam / trainer.n_voxels,
                                              layout)
    synthesis = grid_quant.synthesis_payload(state.synthesis.flat_tensors(), codes, layout)
    section = GridSection(layout, float(state.lam), synthesis, step, context,
                          ResidualModel.empty() if residual else None, filtered).pack()
    overhead = file_overhead(ndim, len(blocks), len(section)) + length_fields
    scaled = [[g / step for g in tile] for tile in raw]
    coded, zeroed = grid_quant.trim_to_budget(latents, scaled, target, overhead, coded, context)
    if not zeroed:
        coded, _ = grid_quant.fill_to_budget(latents, scaled, target, overhead, coded, context=context)
    if residual and context is not None:
        yield StageStarted("quantise", "coding what the latents leave as DCT blocks (residual layer)")
        shapes = [tuple(s.stop - s.start for s in blocks[i].slices) for i in tiles]
        decoded, level1 = decoded_tiles(coded, shapes, layout, synthesis, step, context)
        room = whole_target - overhead - sum(len(p) for p in coded)
        block = config.grid.residual_block
        shapes_tried = BLOCK_CANDIDATES if block is None else (tuple(int(m) for m in block),)
        targets = [normalised[blocks[i].slices] for i in tiles]

        def code(room: int, shapes: Sequence[Sequence[int]]) -> tuple[ResidualModel, list[bytes]]:
            return code_residual(targets, decoded, level1, room, stopped, blocks=shapes)[:2]

        choice = None
        if filtered:
            yield StageStarted("quantise", "coding the residual and fitting loop filters to what it leaves")
            regions = [b.slices for b in blocks]
            reader = FilterTarget(normalised, data, regions, records, tiles, decoded, level1)
            model, streams, choice = residual_with_filters(code, room, shapes_tried, reader, whole_target,
                                                           stopped)
        else:
            model, streams = code(room, shapes_tried)
        if stopped():
            raise SciCancelledError("compression cancelled while coding the residual; nothing written")
        section = GridSection(layout, float(state.lam), synthesis, step, context, model, filtered,
                              choice.shared if choice else None).pack()
        choices = [pack_choice(c) for c in choice.tiles] if choice else [b""] * len(streams)
        coded = [join_payload(p, c + r) for p, c, r in zip(coded, choices, streams)]
    payloads = [b""] * len(blocks)
    for index, payload in zip(tiles, coded):
        payloads[index] = payload
    return GridCoded(records, payloads, section, state.steps, state.elapsed, state.lam, zeroed)
