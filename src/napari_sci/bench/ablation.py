"""The SCI paper's ablations (its Table 2): one factor changed at a time, same volume, budget, steps.

Factors: the partition (adaptive ILP / equidistant ``equal`` / none), the funnel ratio fr (2.2 / 1.0 /
0.5) and the allocation rule (size-over-d / size / inverse-d / equal), all on the paper's SIREN model.
Every other setting stays at the core's default, so the default configuration appears in all three
groups; it is encoded once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sci.base.config import FitConfig
from napari_sci.core import metrics

DEFAULTS: dict[str, Any] = {"method": "adaptive", "fr": 2.2, "rule": "size-over-d"}


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: which factor, its label, the settings that differ from default."""

    factor: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted({**DEFAULTS, **self.overrides}.items()))


VARIANTS: tuple[Variant, ...] = (
    Variant("partition", "adaptive (ILP)"),
    Variant("partition", "equidistant", {"method": "equal"}),
    Variant("partition", "none", {"method": "none"}),
    Variant("funnel ratio", "fr = 2.2"),
    Variant("funnel ratio", "fr = 1.0", {"fr": 1.0}),
    Variant("funnel ratio", "fr = 0.5", {"fr": 0.5}),
    Variant("allocation", "size-over-d"),
    Variant("allocation", "size", {"rule": "size"}),
    Variant("allocation", "inverse-d", {"rule": "inverse-d"}),
    Variant("allocation", "equal", {"rule": "equal"}),
)


@dataclass(frozen=True)
class AblationRow:
    """A variant's result, measured by the core's metrics on the decoded file."""

    factor: str
    label: str
    settings: dict[str, Any]
    bytes: int
    bpv: float
    psnr_data: float
    psnr_dtype: float
    ssim: float
    blocks: int
    networks: int
    parameters: int
    steps: int
    seconds: float


@dataclass(frozen=True)
class AblationSettings:
    """The budget (the paper's Table 2 uses 0.1 BPV) and training shared by every variant."""

    bpv: float = 0.1
    steps: int = FitConfig.steps
    time_limit: float | None = FitConfig.time_limit
    device: str = FitConfig.device
    seed: int = FitConfig.seed


def _encode(volume: np.ndarray, overrides: dict[str, Any], settings: AblationSettings) -> dict[str, Any]:
    from napari_sci.base.config import compress_config
    from napari_sci.core.codec import encode
    from napari_sci.core.decoder import decode_contents
    from napari_sci.io.container import parse

    config = compress_config(bpv=settings.bpv, steps=settings.steps, time_limit=settings.time_limit,
                             device=settings.device, seed=settings.seed, **{"model": "siren", **overrides})
    started = time.perf_counter()
    result = encode(volume, config)
    seconds = time.perf_counter() - started
    decoded = decode_contents(parse(result.data))
    fidelity = metrics.evaluate(volume, decoded)
    return {"bytes": result.n_bytes, "bpv": metrics.bits_per_voxel(result.n_bytes, volume.size),
            "psnr_data": fidelity.psnr_data, "psnr_dtype": fidelity.psnr_dtype, "ssim": fidelity.ssim,
            "blocks": len(result.partition.blocks),
            "networks": sum(not n.is_constant for n in result.networks),
            "parameters": result.n_params, "steps": result.contents.header.steps, "seconds": seconds}


def run_ablation(volume: np.ndarray, settings: AblationSettings,
                 variants: tuple[Variant, ...] = VARIANTS,
                 on_row: Callable[[AblationRow], None] | None = None) -> list[AblationRow]:
    """Every variant on ``volume``; identical configurations are encoded once and reported in each
    group they belong to. ``on_row`` sees each row as it is done (progress)."""
    done: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    rows = []
    for variant in variants:
        key = variant.key()
        if key not in done:
            done[key] = _encode(volume, variant.overrides, settings)
        rows.append(AblationRow(variant.factor, variant.label, dict(key), **done[key]))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def markdown_table(rows: list[AblationRow], title: str) -> str:
    """The rows as a markdown table (one section per factor, as the paper's Table 2)."""
    lines = [f"**{title}**", "",
             "| factor | variant | PSNR data (dB) | PSNR dtype (dB) | SSIM | BPV | bytes | blocks "
             "| networks | parameters | steps | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.factor} | {r.label} | {r.psnr_data:.2f} | {r.psnr_dtype:.2f} | {r.ssim:.4f} "
                     f"| {r.bpv:.4f} | {r.bytes} | {r.blocks} | {r.networks} | {r.parameters} "
                     f"| {r.steps} | {r.seconds:.1f} |")
    return "\n".join(lines) + "\n"
