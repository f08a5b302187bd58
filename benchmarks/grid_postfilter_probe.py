"""How much a convolutional synthesis stage could add on top of a fitted file, its latents fixed.

Fits, on the decoded volume against the original, (1) the least-squares 3×3×3 linear filter (a
Wiener filter: what one linear 3×3×3 layer after the synthesis could give for free) and (2) a small
residual post-network (3×3×3 conv → ReLU → 1×1×1 → ReLU → 3×3×3, ``--width`` channels, Adam on random
patches), and reports the PSNR (data range) of each. A bound from below on what a trained 3×3×3 stage
would add, since the latents would adapt too; an upper bound for a stage that only post-filters.

    python benchmarks/grid_postfilter_probe.py ../shared/data/mri_t1_colin27.tif \
        runs/mri_t1_colin27_grid_0.1.sci --out benchmarks/results/grid/postfilter_mri.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_sci.core.decoder import decode_contents
from napari_sci.io.container import read_sci


def psnr(decoded: np.ndarray, original: np.ndarray, peak: float) -> float:
    return float(10 * np.log10(peak ** 2 / np.mean((decoded - original) ** 2)))


def wiener(decoded: np.ndarray, original: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """The 3×3×3 linear filter (27 taps and a bias) of least squared error, applied."""
    padded = np.pad(decoded, 1, mode="edge")
    shape = decoded.shape
    columns = [padded[a:a + shape[0], b:b + shape[1], c:c + shape[2]].reshape(-1)
               for a in range(3) for b in range(3) for c in range(3)]
    design = np.stack([*columns, np.ones(decoded.size)], axis=1)
    pick = np.random.default_rng(seed).choice(decoded.size, min(decoded.size, samples), replace=False)
    taps, *_ = np.linalg.lstsq(design[pick], original.reshape(-1)[pick], rcond=None)
    return (design @ taps).reshape(shape)


def post_network(decoded: np.ndarray, original: np.ndarray, width: int, steps: int,
                 seed: int) -> tuple[np.ndarray, int]:
    """A residual 3×3×3 / 1×1×1 / 3×3×3 network trained on 24³ patches; the filtered volume and its
    parameter count."""
    torch.manual_seed(seed)
    low, span = float(original.min()), float(original.max() - original.min())
    x = torch.from_numpy(((decoded - low) / span).astype(np.float32))
    y = torch.from_numpy(((original - low) / span).astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Conv3d(1, width, 3), torch.nn.ReLU(), torch.nn.Conv3d(width, width, 1),
                              torch.nn.ReLU(), torch.nn.Conv3d(width, 1, 3))
    torch.nn.init.zeros_(net[-1].weight)
    torch.nn.init.zeros_(net[-1].bias)
    optimiser = torch.optim.Adam(net.parameters(), 3e-3)
    patch, batch = 24, 16
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        corners = [torch.randint(0, max(1, s - patch - 4), (batch,), generator=generator) for s in x.shape]
        inputs = torch.stack([x[a:a + patch + 4, b:b + patch + 4, c:c + patch + 4]
                              for a, b, c in zip(*corners)])
        targets = torch.stack([y[a + 2:a + patch + 2, b + 2:b + patch + 2, c + 2:c + patch + 2]
                               for a, b, c in zip(*corners)])
        out = inputs[:, None, 2:-2, 2:-2, 2:-2] + net(inputs[:, None])
        loss = torch.mean((out[:, 0] - targets) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        padded = torch.nn.functional.pad(x[None, None], (2,) * 6, mode="replicate")
        filtered = (x + net(padded)[0, 0]).clamp(0, 1).numpy()
    return low + filtered.astype(np.float64) * span, sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("original")
    parser.add_argument("sci")
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    original = tifffile.imread(args.original).astype(np.float64)
    if original.ndim != 3:
        raise SystemExit(f"{args.original}: a 3-D volume is needed, got shape {original.shape}")
    decoded = decode_contents(read_sci(args.sci)).astype(np.float64)
    peak = float(original.max() - original.min())
    low, high = original.min(), original.max()
    started = time.perf_counter()
    linear = np.clip(wiener(decoded, original, 2_000_000, args.seed), low, high)
    network, params = post_network(decoded, original, args.width, args.steps, args.seed)
    result = {"original": args.original, "sci": args.sci, "psnr_decoded": psnr(decoded, original, peak),
              "psnr_wiener_3x3x3": psnr(linear, original, peak),
              "psnr_post_network": psnr(network, original, peak), "post_network_params": params,
              "post_network_steps": args.steps, "seconds": time.perf_counter() - started}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
