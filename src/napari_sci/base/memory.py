"""How much memory an encode or decode needs, and how much this machine can give.

A volume too large for memory must be refused *before* anything is allocated, with the size it needs,
instead of dying in the middle of a fit (or being killed by the kernel). The estimates are measured,
not derived: see ``docs/robustness.md`` for the runs behind the constants.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from napari_sci.errors import SciConfigError

# Measured peak RSS of encode on CPU (torch 2.13, numpy 2): 160-300 bytes per voxel above the
# interpreter's baseline for 0.5-8 Mvoxel volumes (partition FFTs, fit targets, decode, deblocking and
# the float64 metrics), plus the input itself. Rounded up so that an accepted volume fits.
ENCODE_BYTES_PER_VOXEL = 320
# Decoding a box: float32 values and int32 labels, deblocking temporaries, the output dtype.
DECODE_BYTES_PER_VOXEL = 80
FIXED_OVERHEAD_BYTES = 512 * 2**20
MEMORY_ENV = "NAPARI_SCI_MAX_MEMORY"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def encoder_peak_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Estimated peak memory of :func:`napari_sci.core.codec.encode` for a volume."""
    n = math.prod(int(s) for s in shape)
    return n * (ENCODE_BYTES_PER_VOXEL + np.dtype(dtype).itemsize) + FIXED_OVERHEAD_BYTES


def decoder_peak_bytes(n_voxels: int) -> int:
    """Estimated memory to decode ``n_voxels`` voxels at once (a box of a ``.sci`` file)."""
    return int(n_voxels) * DECODE_BYTES_PER_VOXEL


def parse_size(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1000000"`` → bytes (binary units)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _UNITS and not value[-1:].isdigit() else ""
    number = value[: len(value) - len(unit)]
    try:
        size = float(number) * _UNITS[unit]
    except ValueError:
        size = math.nan
    if not math.isfinite(size) or size <= 0:
        raise SciConfigError(f"{MEMORY_ENV}={text!r} is not a size; use bytes or e.g. 8G, 512M")
    return int(size)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), if there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def available_memory() -> int | None:
    """Bytes this process may still allocate: ``$NAPARI_SCI_MAX_MEMORY`` if set, else what the OS
    reports available (the smaller of MemAvailable and a cgroup limit); None when unknown."""
    override = os.environ.get(MEMORY_ENV)
    if override:
        return parse_size(override)
    known = [v for v in (_meminfo_available() or _sysconf_available(), _cgroup_available())
             if v is not None]
    return min(known) if known else None


def describe_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
