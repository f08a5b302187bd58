"""Probe: does the upsampling kernel of the latent pyramid matter, all else equal?

A stand-alone miniature of the grid model (not the codec): one latent level per octave (levels 1–6 of
a crop), upsampled by dense per-axis matrices, a 6 → 16 → 16 → 1 ReLU MLP, a factorised Laplace rate
per level, every voxel every step, uniform noise then straight-through rounding, the same λ and steps
for every kernel. Kernels: ``linear`` (models 2–4), ``catmull`` (Catmull-Rom), ``bspline`` (the cubic
B-spline at the voxels), ``bspline2`` (level 1 linear, levels ≥ 2 by the B-spline on level 1's samples
then linearly), ``bspline3`` (every level ≥ 1 that way). The rate is each level's ideal code length
under its best Laplace. Session 24's figures: docs/benchmarks.md §7.

    python benchmarks/upsampling_probe.py --kernel bspline --out results.jsonl
"""
import argparse
import json
import math
import time

import numpy as np
import tifffile
import torch

from napari_sci.models.grid_net import laplace_bits

p = argparse.ArgumentParser()
p.add_argument("--kernel", default="linear")
p.add_argument("--lam", type=float, default=3e-3)
p.add_argument("--steps", type=int, default=1200)
p.add_argument("--crop", default="60:124,40:168,30:158")
p.add_argument("--vol", default="../shared/data/mri_t1_colin27.tif")
p.add_argument("--out", default="upsampling_probe.jsonl")
p.add_argument("--finest", type=int, default=1)
p.add_argument("--levels", type=int, default=7)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
torch.manual_seed(a.seed)
torch.set_num_threads(2)
v = tifffile.imread(a.vol).astype(np.float32)
lo, hi = float(v.min()), float(v.max())
sl = tuple(slice(*map(int, s.split(":"))) for s in a.crop.split(","))
x = torch.from_numpy((v[sl] - lo) / (hi - lo))
shape = x.shape


def taps(kernel, t):
    """weights of samples at floor-1..floor+2 for fractional t (cubic), or floor, floor+1 (linear)."""
    if kernel == "linear":
        return {0: 1 - t, 1: t}
    if kernel == "catmull":
        return {-1: (-t + 2 * t**2 - t**3) / 2, 0: (2 - 5 * t**2 + 3 * t**3) / 2,
                1: (t + 4 * t**2 - 3 * t**3) / 2, 2: (-t**2 + t**3) / 2}
    if kernel == "bspline":
        return {-1: (1 - t)**3 / 6, 0: (4 - 6 * t**2 + 3 * t**3) / 6,
                1: (1 + 3 * t + 3 * t**2 - 3 * t**3) / 6, 2: t**3 / 6}
    raise ValueError(kernel)


def matrix(size, level, kernel):
    n = -(-size // (1 << level))
    m = np.zeros((size, n), np.float64)
    for i in range(size):
        pos = (i + 0.5) / (1 << level) - 0.5
        pos = min(max(pos, 0.0), n - 1.0)
        f = math.floor(pos)
        t = pos - f
        for k, w in taps(kernel, t).items():
            j = min(max(f + k, 0), n - 1)
            m[i, j] += w
    return torch.from_numpy(m.astype(np.float32))


levels = list(range(a.finest, a.levels))
def composed(size, level):
    if level == 1 and a.kernel == "bspline3":
        return matrix(size, 1, "linear") @ matrix(-(-size // 2), 0, "bspline")
    if level <= 1:
        return matrix(size, level, "linear")
    return matrix(size, 1, "linear") @ matrix(-(-size // 2), level - 1, "bspline")


if a.kernel in ("bspline2", "bspline3"):
    mats = {lv: [composed(s, lv) for s in shape] for lv in levels}
else:
    mats = {lv: [matrix(s, lv, a.kernel) for s in shape] for lv in levels}
lat = [torch.zeros(tuple(-(-s // (1 << lv)) for s in shape), requires_grad=True) for lv in levels]
logscale = torch.zeros(len(levels), requires_grad=True)
H = 16
mlp = torch.nn.Sequential(torch.nn.Linear(len(levels), H), torch.nn.ReLU(), torch.nn.Linear(H, H),
                          torch.nn.ReLU(), torch.nn.Linear(H, 1))


def up(z, m):
    z = torch.einsum("ia,abc->ibc", m[0], z)
    z = torch.einsum("jb,ibc->ijc", m[1], z)
    return torch.einsum("kc,ijc->ijk", m[2], z)


lbits = laplace_bits  # the codec's quantised-Laplace bits


opt = torch.optim.Adam([{"params": lat, "lr": 1e-1}, {"params": [logscale], "lr": 1e-2},
                        {"params": mlp.parameters(), "lr": 1e-2}])
N = x.numel()
warm = int(0.05 * a.steps)
ste = min(400, int(0.2 * a.steps))
t0 = time.time()


def forward(mode):
    feats = []
    bits = 0.0
    for i, (lv, z) in enumerate(zip(levels, lat)):
        if mode == "noise":
            q = z + torch.rand_like(z) - 0.5
        elif mode == "ste":
            q = z + (torch.round(z) - z).detach()
        else:
            q = torch.round(z)
        feats.append(up(q, mats[lv]))
        bits = bits + lbits(q, torch.exp(logscale[i]) + 1e-3).sum()
    f = torch.stack(feats, -1).reshape(-1, len(levels))
    y = mlp(f).reshape(shape)
    return ((y - x) ** 2).mean(), bits / N


for step in range(a.steps):
    frac = step / a.steps
    for g, base in zip(opt.param_groups, (1e-1, 1e-2, 1e-2)):
        g["lr"] = base * 0.5 * (1 + math.cos(math.pi * frac))
    mode = "ste" if step >= a.steps - ste else "noise"
    mse, bpv = forward(mode)
    loss = mse + (a.lam * bpv if step >= warm else 0.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 200 == 0:
        print(step, f"{-10 * math.log10(mse.item()):.2f}", f"{bpv.item():.4f}",
              f"{time.time() - t0:.0f}s", flush=True)

with torch.no_grad():
    mse, bpv = forward("round")
    # ideal factorised bits with per-level best scale (empirical)
    tot = 0.0
    for z in lat:
        q = torch.round(z)
        best = min(lbits(q, torch.tensor(s)).sum().item() for s in np.geomspace(0.02, 20, 60))
        tot += best
res = dict(volume=a.vol.rsplit("/", 1)[-1], crop=a.crop, kernel=a.kernel, lam=a.lam, steps=a.steps,
           psnr=-10 * math.log10(mse.item()), bpv=tot / N,
           seconds=time.time() - t0, nonzero=[int((torch.round(z) != 0).sum()) for z in lat])
print(json.dumps(res), flush=True)
with open(a.out, "a") as f:
    f.write(json.dumps(res) + "\n")
