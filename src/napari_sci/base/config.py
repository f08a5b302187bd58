"""Frozen, validated settings for every stage of the pipeline, and the one place their defaults live.

Each stage receives the dataclass it needs; nothing reads settings from globals or dicts. The CLIs, the
widgets, the writer and the benchmarks take their defaults from these classes (``FitConfig.steps``);
:func:`compress_config` builds a :class:`CompressConfig` from flat keywords (the API's and the CLI's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from napari_sci.base.grid_geometry import residual_block_ok
from napari_sci.errors import SciConfigError

PartitionMethod = Literal["adaptive", "equal", "none"]
AllocationRule = Literal["size-over-d", "size", "inverse-d", "equal"]
# raw intensities τ of the binarised accuracy Acc(τ) (metrics, `napari-sci evaluate`, the benchmarks)
ACCURACY_THRESHOLDS: tuple[float, ...] = (200.0, 500.0)

PARTITION_METHODS: tuple[str, ...] = ("adaptive", "equal", "none")
ALLOCATION_RULES: tuple[str, ...] = ("size-over-d", "size", "inverse-d", "equal")
COMPILE_MODES: tuple[str, ...] = ("auto", "off", "default", "max-autotune-no-cudagraphs",
                                  "reduce-overhead")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SciConfigError(message)


@dataclass(frozen=True)
class PartitionConfig:
    """How the volume is cut into blocks (paper §3.1).

    Parameters
    ----------
    method
        ``adaptive`` solves the ILP over the block tree; ``equal`` takes the deepest tree level with at
        most ``max_blocks`` nodes; ``none`` keeps the whole volume as one block.
    max_blocks
        a_max, the most leaves the ILP may choose (the paper's default is 50).
    top_m
        M, how many of the largest FFT magnitudes count as "concentrated" in D.
    max_depth
        Levels of the block tree below the root.
    min_leaf_side
        An axis is split only while it has at least twice this many voxels.
    time_limit
        Seconds the ILP solver may spend; its best feasible cut is used after that.
    """

    method: PartitionMethod = "adaptive"
    max_blocks: int = 50
    top_m: int = 1
    max_depth: int = 3
    min_leaf_side: int = 8
    time_limit: float = 30.0

    def __post_init__(self) -> None:
        _require(self.method in PARTITION_METHODS,
                 f"partition method must be one of {PARTITION_METHODS}, got {self.method!r}")
        _require(1 <= self.max_blocks <= 65535, f"max_blocks must be 1..65535, got {self.max_blocks}")
        _require(1 <= self.top_m <= 65535, f"top_m (M) must be 1..65535, got {self.top_m}")
        _require(0 <= self.max_depth <= 6, f"max_depth must be 0..6, got {self.max_depth}")
        _require(1 <= self.min_leaf_side <= 65535,
                 f"min_leaf_side must be 1..65535, got {self.min_leaf_side}")
        _require(self.time_limit > 0, f"time_limit must be > 0 s, got {self.time_limit}")


@dataclass(frozen=True)
class NetworkSpec:
    """The funnel-shaped SIREN of every block (paper §3.2).

    ``layers`` linear layers; the first hidden layer is ``fr`` times wider than the others; sine
    activations with frequency ``w0`` in the first layer and ``w0_hidden`` after it (SIREN's 30).
    A block whose parameter share cannot hold ``min_hidden`` hidden units is stored as its mean.
    """

    layers: int = 7
    fr: float = 2.2
    w0: float = 20.0
    w0_hidden: float = 30.0
    min_hidden: int = 4

    def __post_init__(self) -> None:
        _require(3 <= self.layers <= 255, f"layers must be 3..255, got {self.layers}")
        _require(0.05 <= self.fr <= 64 and math.isfinite(self.fr),
                 f"fr (funnel ratio) must be in [0.05, 64], got {self.fr}")
        _require(math.isfinite(self.w0) and self.w0 > 0, f"w0 must be > 0, got {self.w0}")
        _require(math.isfinite(self.w0_hidden) and self.w0_hidden > 0,
                 f"w0_hidden must be > 0, got {self.w0_hidden}")
        _require(1 <= self.min_hidden <= 4096, f"min_hidden must be 1..4096, got {self.min_hidden}")


@dataclass(frozen=True)
class AllocationConfig:
    """How the parameter budget is shared between blocks (paper §3.3: ``size-over-d``).

    Parameters
    ----------
    rule
        Share of each block: ``size-over-d`` (|x|/D, the paper), ``size``, ``inverse-d``, ``equal``.
    useful_hidden
        The partition may use only as many blocks as the budget affords networks of this hidden
        width; a tree of tiny networks fits worse than fewer larger ones (docs/benchmarks.md).
    negligible
        A block whose squared error around its own mean is below this fraction of the volume's total
        is stored as its mean: even a perfect network there could not change the PSNR measurably.
        D is scale-invariant, so such near-empty blocks (a few noisy voxels in background) would
        otherwise look maximally complex and take the largest |x|/D shares.
    """

    rule: AllocationRule = "size-over-d"
    useful_hidden: int = 16
    negligible: float = 1e-4

    def __post_init__(self) -> None:
        _require(0 <= self.negligible < 1, f"negligible must be in [0, 1), got {self.negligible}")
        _require(self.rule in ALLOCATION_RULES,
                 f"allocation rule must be one of {ALLOCATION_RULES}, got {self.rule!r}")
        _require(1 <= self.useful_hidden <= 4096,
                 f"useful_hidden must be 1..4096, got {self.useful_hidden}")


@dataclass(frozen=True)
class FitConfig:
    """How the networks are trained (paper §3.4: Adamax, lr 1e-3).

    Parameters
    ----------
    steps
        Optimiser steps; every block takes one step per step.
    time_limit
        Optional wall-clock limit in seconds; fitting stops at whichever comes first.
    lr, decay_at, decay
        Learning rate, the fraction of the run after which it is multiplied by ``decay``.
    samples_per_block
        Voxels per block per step; blocks with fewer voxels use all of them (full batch).
    seed
        Seeds the initialisation and the sampling; CPU runs are bit-reproducible.
    device
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    report_every
        Steps between progress events (the only points where a step's loss is read back).
    compile
        How one training step is run (``core/fit_step.py``): ``off`` (eager; bit-identical to the
        loop of earlier releases), ``default`` or ``max-autotune-no-cudagraphs`` (``torch.compile``),
        ``reduce-overhead`` (CUDA graphs; CUDA only), ``auto`` (each device's measured best).
    """

    steps: int = 2000
    time_limit: float | None = None
    lr: float = 1e-3
    decay_at: float = 0.8
    decay: float = 0.2
    samples_per_block: int = 4096
    seed: int = 0
    device: str = "auto"
    report_every: int = 10
    compile: str = "auto"

    def __post_init__(self) -> None:
        _require(0 <= self.steps <= 10_000_000, f"steps must be 0..10000000, got {self.steps}")
        _require(self.time_limit is None or self.time_limit > 0,
                 f"time_limit must be > 0 s, got {self.time_limit}")
        _require(0 < self.lr < 1, f"lr must be in (0, 1), got {self.lr}")
        _require(0 < self.decay_at <= 1, f"decay_at must be in (0, 1], got {self.decay_at}")
        _require(0 < self.decay <= 1, f"decay must be in (0, 1], got {self.decay}")
        _require(1 <= self.samples_per_block <= 2**24,
                 f"samples_per_block must be 1..16777216, got {self.samples_per_block}")
        _require(0 <= self.seed < 2**32, f"seed must be 0..2**32-1, got {self.seed}")
        _require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                 f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        _require(self.report_every >= 1, f"report_every must be >= 1, got {self.report_every}")
        _require(self.compile in COMPILE_MODES,
                 f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")


@dataclass(frozen=True)
class CodingConfig:
    """How network weights are stored in the file.

    Parameters
    ----------
    format_version
        1: raw float32 weights (the paper). 2: each tensor quantised with its own step and entropy
        coded (ANS); the steps are chosen to fill the byte budget exactly.
    bits_per_param
        Expected coded cost of a parameter in format 2, used to size the networks before fitting.
        6 measured best of 5-10 on the MRI and CT volumes at 0.1 BPV (docs/benchmarks.md).
    qat_fraction
        Share of the steps spent on quantisation-aware fine-tuning in format 2.
    """

    format_version: int = 2
    bits_per_param: float = 6.0
    qat_fraction: float = 0.15

    def __post_init__(self) -> None:
        _require(self.format_version in (1, 2), f"format_version must be 1 or 2, got {self.format_version}")
        _require(1.0 <= self.bits_per_param <= 32.0,
                 f"bits_per_param must be in [1, 32], got {self.bits_per_param}")
        _require(0.0 <= self.qat_fraction < 1.0, f"qat_fraction must be in [0, 1), got {self.qat_fraction}")

    @property
    def bytes_per_param(self) -> float:
        """What a parameter is expected to cost: 4 bytes raw, or the coded estimate."""
        return 4.0 if self.format_version == 1 else self.bits_per_param / 8


MODEL_FAMILIES: tuple[str, ...] = ("siren", "grid")
ENTROPY_MODELS: tuple[str, ...] = ("context", "predictive", "factorised")
UPSAMPLINGS: tuple[str, ...] = ("auto", "linear", "bspline")
RESIDUALS: tuple[str, ...] = ("auto", "none", "dct")
BSPLINE_LATENT_BPV = 0.02  # beside a residual layer, the latents' most bits per voxel with the B-spline
LINEAR_LATENT_BPV = 0.1    # and with linear upsampling (GridConfig.residual_grid_bpv_used)


@dataclass(frozen=True)
class GridConfig:
    """The latent-grid model family (format 3): its shape and its rate–distortion training.

    Parameters
    ----------
    levels
        Latent levels of a tile, full resolution down to 1/2^(levels−1) (Cool-chic uses 7).
    grid_hidden, grid_layers
        Width and depth of the synthesis MLP shared by all tiles (levels → hidden … → 1, ReLU).
    max_tiles
        The most tiles (leaves of the partition) the volume is cut into; fewer, larger tiles cost
        less side information, more tiles decode a slice with less work.
    finest_level
        The finest latent level trained (0: full resolution); ``None``: chosen from the volume
        (``models.grid_fit.choose_finest_level``). Finer levels stay zero, cost a byte a tile and no
        work: at 0.1 BPV the full-resolution level, 7/8 of the latents and half a step's work, ended
        empty on the MRI, while the sparse neuron crop put three quarters of its bits there.
    sparse_fine
        On sampled steps, update the full-resolution level only where the drawn voxels touch it (a
        lazy Adam; each voxel pays its own latent's rate), not every latent every step.
    grid_samples
        Voxels drawn across the tiles for each step's distortion; 0: every voxel every step (each
        level upsampled whole, Cool-chic's full-signal step). Every latent pays its rate every step.
    grid_lr, latent_lr_scale
        Adam's learning rate (cosine-decayed, C3/Cool-chic 1e-2) and its multiplier for the latents.
    warmup_fraction, ste_fraction
        Shares of the steps run without the rate term first (the latents grow from zero), and with
        straight-through rounding last (after the uniform-noise phase).
    ste_max_steps
        The straight-through phase's length at most. Longer, it piles latents up at the rounding
        threshold: the CT at 0.1 BPV, 900 s, gave 31.16 dB with 1,191 such steps, 32.44 dB with 400.
    initial_lambda
        λ (MSE per bit per voxel) when the rate term starts, for a 0.25 BPV target (scaled by
        0.25/BPV for others); a controller then steers it to the budget.
    compile_step
        ``torch.compile`` the training step: ``auto`` (when the fit is projected to outlast the
        compile), ``on`` or ``off``. Eager and compiled steps compute the same loss.
    exact_tiles
        When every non-constant tile, stored losslessly (format 3's kind 4, LZMA2), fits the budget,
        write the file that way and fit nothing (a sparse volume: the neuron crop takes 0.029 BPV);
        off: always latents.
    entropy
        How the latents are coded: ``context`` (format 3, model 3: each latent's scale from its
        decoded neighbours and the coarser level, slopes trained with the latents),
        ``predictive`` (model 4: model 3 with each latent's mean predicted from the same decoded
        samples, four weights a level trained with the latents) or ``factorised`` (model 2: one
        scale per tile level).
    upsampling
        How a level reaches the voxels: ``linear`` (models 2–4) or ``bspline`` (models 5 and 6: the
        level evaluated by the cubic B-spline on level 1's samples, then linearly; a smoother basis,
        context-coded entropy only); ``auto`` (the default): ``bspline`` with the context and
        predictive entropy models when it fits the volume clearly better than linear interpolation
        (``models.grid_fit.choose_upsampling``; of the development volumes, the MRI), else ``linear``.
    residual
        ``dct`` (models 11 and 12, 3-D volumes, context entropy): the latents are fitted to
        min(``residual_grid_bpv``, ``latent_share`` × the budget, what leaves the residual layer — its
        model and streams — 0.01 BPV) and what they leave is coded as DCT blocks with the rest — a
        latent fit's curve flattens near 0.1 BPV and a block transform codes the residual at a far
        steeper slope (docs/benchmarks.md §7, sessions 26–27); ``none``;
        ``auto`` (the default): ``dct`` for a 3-D volume with the context entropy model when the
        budget is at least 0.04 BPV (0.02 with the B-spline) and holds the layer's model beside the
        smallest latents, else ``none``.
    residual_grid_bpv, latent_share
        With a residual layer, the most bits per voxel the latents get, and their largest share of
        the budget (session 27, 0.1 BPV: latents at 0.075 and the residual the rest beat latents
        alone on the MRI, CT and light-sheet crop by +0.3 to +1.0 dB; at 0.05 BPV, latents at 0.0375:
        MRI +0.9, light-sheet +0.5, CT −0.2 dB; at 0.25 BPV the latents at 0.1 beat 0.15 on the CT).
        ``None`` (the default): 0.02 BPV with the B-spline, 0.1 with linear upsampling
        (:attr:`residual_grid_bpv_used`).
    residual_block
        The residual's block shape, voxels per axis (each a power of two 2–32, 512 to 4,096 voxels);
        ``None`` (the default): the encoder codes the residual with 8³, 16³, 4×16×16, 4×32×32 and
        2×32×32 blocks and keeps the best at the budget (session 29, the same latents and bytes: the
        light-sheet crop +0.5 to +1.1 dB at 0.05–0.1 BPV with the thin ones, the MRI +0.14 to +0.35
        with 16³, the CT 8³).
    loop_filter
        With a residual layer, least-squares loop filters over the decoded tiles, one shared and one
        per tile where they pay for their bytes (format 3's models 13 and 14; session 32, offline on
        the table's files: +0.45 dB on the MRI at 0.1–0.25 BPV, +0.1 on the CT and the light-sheet
        crop); ``False`` writes models 11 and 12.
    """

    levels: int = 7
    grid_hidden: int = 16
    grid_layers: int = 3
    max_tiles: int = 16
    finest_level: int | None = None
    sparse_fine: bool = False
    grid_samples: int = 1 << 17
    grid_lr: float = 1e-2
    latent_lr_scale: float = 10.0
    warmup_fraction: float = 0.05
    ste_fraction: float = 0.2
    ste_max_steps: int = 400
    initial_lambda: float = 1e-2
    compile_step: str = "auto"
    exact_tiles: bool = True
    entropy: str = "context"
    upsampling: str = "auto"
    residual: str = "auto"
    residual_grid_bpv: float | None = None
    latent_share: float = 0.75
    residual_block: tuple[int, int, int] | None = None
    loop_filter: bool = True

    @property
    def context_coded(self) -> bool:
        """Latents coded with contexts (models 3 and 4), not one scale per tile level (model 2)."""
        return self.entropy in ("context", "predictive")

    @property
    def upsampling_used(self) -> str:
        """``upsampling`` as the file follows it: ``auto`` with the factorised model is linear; with the
        context models the encoder first chooses it from the volume (``grid_encode.resolve_upsampling``)."""
        if self.upsampling != "auto":
            return self.upsampling
        _require(not self.context_coded, "upsampling 'auto' is chosen from the volume before it is used")
        return "linear"

    @property
    def residual_grid_bpv_used(self) -> float:
        """The latents' most bits per voxel beside a residual layer. Left ``None``, it follows the
        upsampling: a B-spline base leaves what the DCT blocks code far more cheaply (session 28, MRI
        at 0.1 BPV: B-spline latents at 0.04 BPV and the residual 35.28 dB, at 0.075 34.28; linear
        latents at 0.05 then the residual 34.24 offline); with session 29's block shapes less still
        (MRI fits: 33.04 / 36.14 dB at 0.05 / 0.1 BPV with latents at 0.02, 32.31 / 35.63 at 0.04), so
        they get 0.02 BPV; linear latents 0.1 (the CT: 32.78 dB at 0.075 against 32.49 at 0.04)."""
        if self.residual_grid_bpv is not None:
            return self.residual_grid_bpv
        return BSPLINE_LATENT_BPV if self.upsampling_used == "bspline" else LINEAR_LATENT_BPV

    @property
    def filtered(self) -> bool:
        """A loop filter beside the residual layer (models 13 and 14)."""
        return self.residual == "dct" and self.loop_filter

    @property
    def predicts_means(self) -> bool:
        """Each latent's Laplace centred on a predicted mean (model 4)."""
        return self.entropy == "predictive"

    def __post_init__(self) -> None:
        _require(self.entropy in ENTROPY_MODELS,
                 f"entropy must be one of {ENTROPY_MODELS}, got {self.entropy!r}")
        _require(self.upsampling in UPSAMPLINGS,
                 f"upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}")
        _require(self.upsampling != "bspline" or self.context_coded,
                 "B-spline upsampling (models 5 and 6) needs the context or predictive entropy model")
        _require(self.residual in RESIDUALS, f"residual must be one of {RESIDUALS}, got {self.residual!r}")
        _require(self.residual != "dct" or self.entropy == "context",
                 "the residual layer (models 11 and 12) needs the context entropy model")
        _require(self.residual_grid_bpv is None or self.residual_grid_bpv > 0,
                 f"residual_grid_bpv must be > 0 (or None: by the upsampling), got {self.residual_grid_bpv}")
        _require(0 < self.latent_share <= 1, f"latent_share must be in (0, 1], got {self.latent_share}")
        _require(self.residual_block is None or residual_block_ok(self.residual_block),
                 f"residual_block must be three powers of two 2–32 of 512 to 4,096 voxels (or None: "
                 f"chosen by the encoder), got {self.residual_block}")
        _require(not (self.sparse_fine and self.context_coded),
                 "the sparse full-resolution step (sparse_fine) needs the factorised entropy model")
        _require(self.compile_step in ("auto", "on", "off"),
                 f"compile_step must be auto, on or off, got {self.compile_step!r}")
        _require(1 <= self.levels <= 16, f"levels must be 1..16, got {self.levels}")
        _require(1 <= self.grid_hidden <= 255, f"grid_hidden must be 1..255, got {self.grid_hidden}")
        _require(2 <= self.grid_layers <= 8, f"grid_layers must be 2..8, got {self.grid_layers}")
        _require(self.finest_level is None or 0 <= self.finest_level < self.levels,
                 f"finest_level must be 0..levels-1 ({self.levels - 1}), got {self.finest_level}")
        _require(1 <= self.max_tiles <= 65535, f"max_tiles must be 1..65535, got {self.max_tiles}")
        _require(0 <= self.grid_samples <= 2**26, f"grid_samples must be 0..2^26, got {self.grid_samples}")
        _require(0 < self.grid_lr < 1, f"grid_lr must be in (0, 1), got {self.grid_lr}")
        _require(0 < self.latent_lr_scale <= 100,
                 f"latent_lr_scale must be in (0, 100], got {self.latent_lr_scale}")
        _require(0 <= self.warmup_fraction < 1 and 0 <= self.ste_fraction < 1
                 and self.warmup_fraction + self.ste_fraction < 1,
                 "warmup_fraction and ste_fraction must be in [0, 1) with a sum below 1")
        _require(self.ste_max_steps >= 0, f"ste_max_steps must be >= 0, got {self.ste_max_steps}")
        _require(math.isfinite(self.initial_lambda) and self.initial_lambda > 0,
                 f"initial_lambda must be > 0, got {self.initial_lambda}")


@dataclass(frozen=True)
class Budget:
    """The size target: bits per voxel, or compression ratio against the raw array's bytes.

    Every byte of the ``.sci`` file counts against it.
    """

    bpv: float | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        _require((self.bpv is None) != (self.ratio is None),
                 "give exactly one of bpv (bits per voxel) or ratio (compression ratio)")
        value = self.bpv if self.bpv is not None else self.ratio
        _require(value is not None and math.isfinite(value) and value > 0,
                 f"the size target must be a positive number, got {value}")

    def target_bytes(self, n_voxels: int, itemsize: int) -> int:
        """Largest file size in bytes that meets the target."""
        if self.bpv is not None:
            return math.floor(self.bpv * n_voxels / 8)
        assert self.ratio is not None
        return math.floor(n_voxels * itemsize / self.ratio)

    def describe(self) -> str:
        return f"{self.bpv:g} BPV" if self.bpv is not None else f"ratio {self.ratio:g}"


@dataclass(frozen=True)
class CompressConfig:
    """Everything :func:`napari_sci.core.codec.encode` needs besides the volume."""

    budget: Budget
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    coding: CodingConfig = field(default_factory=CodingConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    model: str = "grid"

    def __post_init__(self) -> None:
        _require(self.model in MODEL_FAMILIES,
                 f"model must be one of {MODEL_FAMILIES}, got {self.model!r}")


_STAGES: dict[str, type] = {
    "partition": PartitionConfig,
    "network": NetworkSpec,
    "allocation": AllocationConfig,
    "fit": FitConfig,
    "coding": CodingConfig,
    "grid": GridConfig,
}
_ALIASES = {"partition_method": ("partition", "method"), "allocation_rule": ("allocation", "rule"),
            "method": ("partition", "method"), "rule": ("allocation", "rule"),
            "ilp_time_limit": ("partition", "time_limit"), "time_limit": ("fit", "time_limit"),
            "format": ("coding", "format_version")}


def _owner(name: str) -> tuple[str, str]:
    if name in _ALIASES:
        return _ALIASES[name]
    owners = [stage for stage, cls in _STAGES.items()
              if name in {f.name for f in dataclasses.fields(cls)}]
    if len(owners) != 1:
        known = sorted({f.name for cls in _STAGES.values() for f in dataclasses.fields(cls)}
                       | set(_ALIASES))
        raise SciConfigError(f"unknown setting {name!r}; known settings: {', '.join(known)}")
    return owners[0], name


SIREN_STAGES = ("network", "allocation", "coding")
SIREN_FIT_FIELDS = ("compile", "samples_per_block")


def other_family_settings(model: str, names: Iterable[str]) -> list[str]:
    """The settings among ``names`` that only the other model family reads (an API or a command
    line refuses them rather than ignore them)."""
    wrong = []
    for name in names:
        stage, field_name = _owner(name)
        siren_only = stage in SIREN_STAGES or (stage == "fit" and field_name in SIREN_FIT_FIELDS)
        if (model == "grid" and siren_only) or (model == "siren" and stage == "grid"):
            wrong.append(name)
    return wrong


def compress_config(bpv: float | None = None, ratio: float | None = None,
                    **settings: Any) -> CompressConfig:
    """``compress_config(bpv=0.1, steps=500, max_blocks=20)`` → a validated ``CompressConfig``."""
    per_stage: dict[str, dict[str, Any]] = {stage: {} for stage in _STAGES}
    model = settings.pop("model", CompressConfig.model)
    for name, value in settings.items():
        stage, field_name = _owner(name)
        per_stage[stage][field_name] = value
    return CompressConfig(budget=Budget(bpv=bpv, ratio=ratio), model=model,
                          **{stage: _STAGES[stage](**kw) for stage, kw in per_stage.items()})


STORE_SUFFIX = ".sci.zarr"


@dataclass(frozen=True)
class StoreConfig:
    """How a volume larger than memory is cut into chunks and fitted as Dask tasks (``.sci.zarr``).

    Parameters
    ----------
    chunks
        Side of the cubic zarr chunks (voxels); each chunk is one independent SCI bitstream. Smaller
        chunks need less memory per worker (about 320 bytes per voxel while fitting, docs/robustness.md).
    workers
        Worker processes of the LocalCluster started when no ``scheduler`` is given; ``None``: the
        machine's cores − 1, at least 1. Each worker runs one task with one torch thread. 0 fits the
        chunks one after another in this process, without Dask (small stores, tests, debugging).
    scheduler
        Address of an existing ``dask.distributed`` scheduler (``tcp://host:8786``); its workers are
        used as they are and nothing is started.
    retries
        How often a chunk whose task failed (not a lost worker: dask reschedules those) is tried again.
    """

    chunks: int = 128
    workers: int | None = None
    scheduler: str | None = None
    retries: int = 2

    def __post_init__(self) -> None:
        _require(8 <= self.chunks <= 4096, f"chunks must be 8..4096 voxels, got {self.chunks}")
        _require(self.workers is None or 0 <= self.workers <= 1024,
                 f"workers must be 0..1024, got {self.workers}")
        _require(self.scheduler is None or bool(self.scheduler.strip()),
                 "scheduler must be an address such as tcp://127.0.0.1:8786")
        _require(self.scheduler is None or self.workers is None,
                 "give --workers or --scheduler, not both: an existing cluster keeps its own workers")
        _require(0 <= self.retries <= 100, f"retries must be 0..100, got {self.retries}")

    def worker_count(self, cores: int | None) -> int:
        """The LocalCluster's workers: as asked, else cores − 1 and at least 1."""
        if self.workers is not None:
            return self.workers
        return max(1, (cores or 1) - 1)
