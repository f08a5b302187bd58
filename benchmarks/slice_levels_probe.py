"""Would a per-slice intensity correction pay? An oracle outside the format.

Light-sheet stacks flicker: whole slices darker or brighter than their neighbours (the light-sheet
crop's slices 3 and 13 have half their neighbours' contrast). Latent grids interpolate across slices,
so each jump costs bits or error. This probe matches every slice's mean and standard deviation to the
running median (5 slices) of those along axis 0, compresses the corrected volume with the defaults at
the budget less 4 bytes a slice (what a (gain, offset) pair per slice would cost in a file), undoes the
correction on the decoded volume and reports the PSNR against the original:

    python benchmarks/slice_levels_probe.py \
        ../shared/data/lsm_mousebrain_cells_cellfinder_crop16x256x256.tif \
        --bpv 0.02 --seconds 240 --out benchmarks/results/grid/s31/slice_levels_lsm_0.02.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy.ndimage import median_filter

import napari_sci


def neighbour_error(volume: np.ndarray) -> float:
    """Σ over slices of the squared difference from the mean of the neighbouring slices."""
    total = 0.0
    for z in range(volume.shape[0]):
        around = [volume[k] for k in (z - 1, z + 1) if 0 <= k < volume.shape[0]]
        total += float(((volume[z] - np.mean(around, axis=0)) ** 2).sum())
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("volume")
    parser.add_argument("--bpv", type=float, required=True)
    parser.add_argument("--seconds", type=int, default=240)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    original = tifffile.imread(args.volume)
    x = original.astype(np.float64)
    z = x.shape[0]
    mean, std = x.reshape(z, -1).mean(1), x.reshape(z, -1).std(1)
    gain = median_filter(std, size=5, mode="nearest") / np.maximum(std, 1e-12)
    offset = median_filter(mean, size=5, mode="nearest") - gain * mean
    corrected = gain[:, None, None] * x + offset[:, None, None]
    info = np.iinfo(original.dtype)
    with tempfile.TemporaryDirectory() as work:
        source, coded = Path(work) / "corrected.tif", Path(work) / "corrected.sci"
        tifffile.imwrite(source, np.clip(np.rint(corrected), info.min, info.max).astype(original.dtype))
        started = time.perf_counter()
        bpv = args.bpv - 4 * z * 8 / x.size
        subprocess.run([sys.executable, "-m", "napari_sci", "--threads", "2", "compress", str(source),
                        "-o", str(coded), "--bpv", str(bpv), "--steps", "100000", "--time-limit",
                        str(args.seconds), "-q"], check=True)
        seconds = time.perf_counter() - started
        decoded = napari_sci.open_sci(coded)[...].astype(np.float64)
        file_bytes = coded.stat().st_size
    restored = np.clip(np.rint((decoded - offset[:, None, None]) / gain[:, None, None]), info.min, info.max)
    span = x.max() - x.min()
    record = {"volume": args.volume, "bpv": args.bpv, "file_bytes_with_table": file_bytes + 4 * z,
              "bpv_with_table": (file_bytes + 4 * z) * 8 / x.size,
              "psnr_data": 10 * np.log10(span ** 2 / np.mean((restored - x) ** 2)),
              "neighbour_error_ratio": neighbour_error(corrected) / neighbour_error(x),
              "gain": gain.round(4).tolist(), "offset": offset.round(2).tolist(), "seconds": seconds}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("gain", "offset")}, indent=1))


if __name__ == "__main__":
    main()
