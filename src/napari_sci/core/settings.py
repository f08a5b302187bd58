"""Building a :class:`CompressConfig` from flat keyword settings (the API's and the CLI's)."""

from __future__ import annotations

import dataclasses
from typing import Any

from napari_sci.base.config import (
    AllocationConfig,
    Budget,
    CodingConfig,
    CompressConfig,
    FitConfig,
    NetworkSpec,
    PartitionConfig,
)
from napari_sci.errors import SciConfigError

_STAGES: dict[str, type] = {
    "partition": PartitionConfig,
    "network": NetworkSpec,
    "allocation": AllocationConfig,
    "fit": FitConfig,
    "coding": CodingConfig,
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


def compress_config(bpv: float | None = None, ratio: float | None = None,
                    **settings: Any) -> CompressConfig:
    """``compress_config(bpv=0.1, steps=500, max_blocks=20)`` → a validated ``CompressConfig``."""
    per_stage: dict[str, dict[str, Any]] = {stage: {} for stage in _STAGES}
    for name, value in settings.items():
        stage, field_name = _owner(name)
        per_stage[stage][field_name] = value
    return CompressConfig(budget=Budget(bpv=bpv, ratio=ratio),
                          **{stage: _STAGES[stage](**kw) for stage, kw in per_stage.items()})
