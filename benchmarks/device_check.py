"""The fitting engine before and after, in one run, on whatever device there is (issue 13).

    DEVICE=cuda benchmarks/device_check.sh            # a GPU machine: ≤ 8 minutes, writes the JSON
    DEVICE=cpu STEPS=20 benchmarks/device_check.sh    # the same script, tiny, on a CPU

For each dev volume at 0.1 BPV the SIREN fit (``fit_blocks``, the float phase of an encode; the
partition and allocation are planned once per volume) runs with ``compile=off`` (the engine before
this issue: eager, one kernel per op) and ``compile=auto`` (``reduce-overhead`` CUDA graphs on a GPU;
``--after`` names another mode), and on CUDA once more with TF32 matmuls. Reported: steps/s over the
whole fit (compile time included) and after the first report (steady), the time to a fixed PSNR (the
eager run's final training PSNR minus ``--ttq-margin`` dB: the same target for every variant of a
volume), and the final training PSNR at the same step count. Then ``--concurrent`` fits of the first
volume at once, one process each (eager, then compiled): total steps/s. Then ``--model grid`` encodes
of each volume (whole encodes; decoded PSNR). The JSON is rewritten after every section, so a run cut
short keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from napari_sci.base.config import CompressConfig, compress_config
from napari_sci.base.volume import value_range
from napari_sci.core.codec import encode, plan_blocks
from napari_sci.core.events import FitFinished, FitProgress
from napari_sci.core.fit import fit_blocks

HERE = Path(__file__).resolve().parent
DEV_VOLUMES = ("ct_aorta_totalseg.tif", "mri_t1_colin27.tif",
               "lsm_mousebrain_cells_cellfinder_crop16x256x256.tif",
               "neuron_sparse_rivulet_crop64x256x256.tif")


@dataclasses.dataclass(frozen=True)
class FitInputs:
    """What ``fit_blocks`` needs, planned once per volume (the ILP is not what is measured)."""

    volume: np.ndarray
    blocks: Any
    networks: Any
    lows: np.ndarray
    highs: np.ndarray
    span: float
    config: CompressConfig

    @property
    def parameters(self) -> int:
        return sum(n.params(self.volume.ndim, self.config.network.layers) for n in self.networks)


def plan(volume: np.ndarray, config: CompressConfig) -> FitInputs:
    """Partition, allocate and take each block's value range as ``encode`` does before fitting."""
    found = plan_blocks(volume, config)
    blocks, networks = found.partition.blocks, found.networks
    lows = np.array([float(volume[b.slices].min()) for b in blocks])
    highs = np.array([float(volume[b.slices].max()) for b in blocks])
    for i, net in enumerate(networks):
        if net.is_constant:
            lows[i] = highs[i] = float(volume[blocks[i].slices].mean())
    return FitInputs(volume, blocks, networks, lows, highs, value_range(volume).span, config)


def fit_run(inputs: FitInputs, compile_mode: str) -> dict[str, Any]:
    """One fit; its clock starts before the networks are built, so compiling counts."""
    fit = dataclasses.replace(inputs.config.fit, compile=compile_mode)
    trajectory: list[tuple[int, float, float]] = []
    started = time.perf_counter()
    for event in fit_blocks(inputs.volume, inputs.blocks, inputs.networks, inputs.lows, inputs.highs,
                            inputs.span, inputs.config.network, fit):
        if isinstance(event, FitProgress):
            trajectory.append((event.step, time.perf_counter() - started, event.psnr))
        elif isinstance(event, FitFinished):
            seconds = time.perf_counter() - started
            first_step, first_seconds = trajectory[0][:2]
            # steady: after the first report (compiling done); None when that was the last step
            steady = (round((event.steps - first_step) / max(seconds - first_seconds, 1e-9), 2)
                      if event.steps > first_step else None)
            return {"compile": compile_mode, "steps": event.steps, "seconds": round(seconds, 3),
                    "steps_per_s": round(event.steps / seconds, 2), "steady_steps_per_s": steady,
                    "first_report_seconds": round(first_seconds, 2), "final_psnr": round(event.psnr, 3),
                    "trajectory": [(s, round(t, 3), round(p, 3)) for s, t, p in trajectory]}
    raise AssertionError("fit_blocks ended without FitFinished")


def time_to_psnr(run: dict[str, Any], target: float) -> float | None:
    """Seconds until the training PSNR first reaches ``target`` (None: never)."""
    return next((t for _, t, p in run["trajectory"] if p >= target), None)


def _variants(device: str, after: str) -> list[tuple[str, bool]]:
    return [("off", False), (after, False)] + ([(after, True)] if device.startswith("cuda") else [])


def siren_volume(name: str, inputs: FitInputs, device: str, margin: float, after: str) -> dict[str, Any]:
    runs = []
    for mode, tf32 in _variants(device, after):
        torch.backends.cuda.matmul.allow_tf32 = tf32  # the benchmark's own process: a global is fine
        run = fit_run(inputs, mode)
        run["tf32"] = tf32
        runs.append(run)
        print(f"  {name} compile={mode} tf32={tf32}: {run['steps_per_s']} steps/s "
              f"(steady {run['steady_steps_per_s']}), final PSNR {run['final_psnr']} dB", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    target = runs[0]["final_psnr"] - margin
    for run in runs:
        run["seconds_to_target"] = time_to_psnr(run, target)
        run["psnr_change_vs_eager"] = round(run["final_psnr"] - runs[0]["final_psnr"], 3)
        run["speedup_vs_eager"] = round(run["steps_per_s"] / runs[0]["steps_per_s"], 2)
        if run["steady_steps_per_s"] and runs[0]["steady_steps_per_s"]:
            run["steady_speedup_vs_eager"] = round(run["steady_steps_per_s"] / runs[0]["steady_steps_per_s"],
                                                   2)
    return {"volume": name, "shape": list(inputs.volume.shape), "blocks": len(inputs.blocks),
            "networks": sum(not n.is_constant for n in inputs.networks), "parameters": inputs.parameters,
            "target_psnr": round(target, 3), "runs": runs}


def _concurrent_child(inputs: FitInputs, mode: str, barrier: Any, queue: Any) -> None:
    torch.set_num_threads(1)
    barrier.wait()
    queue.put(fit_run(inputs, mode))


def concurrent(inputs: FitInputs, count: int, mode: str) -> dict[str, Any]:
    """``count`` fits at once, one process each; total steps/s from the common start to the last end."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    barrier, queue = context.Barrier(count + 1), context.Queue()
    workers = [context.Process(target=_concurrent_child, args=(inputs, mode, barrier, queue))
               for _ in range(count)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    runs = [queue.get() for _ in workers]
    seconds = time.perf_counter() - started
    for worker in workers:
        worker.join()
    steps = sum(r["steps"] for r in runs)
    return {"compile": mode, "fits": count, "seconds": round(seconds, 2),
            "total_steps_per_s": round(steps / seconds, 2),
            "per_fit_steady_steps_per_s": [r["steady_steps_per_s"] for r in runs],
            "final_psnr": [r["final_psnr"] for r in runs]}


def grid_volume(name: str, volume: np.ndarray, device: str, steps: int, limit: float,
                after: str) -> dict[str, Any]:
    out = []
    # the sampled step eager and compiled, then the full-signal step (every voxel, compiled when
    # it pays): on the 2-core CPU the sampled step wins at equal time, on a GPU the full one may
    variants = [("off", 1 << 17, "off"), (after, 1 << 17, "auto"), (after, 0, "auto")]
    for mode, samples, compile_step in variants:
        config = compress_config(bpv=0.1, model="grid", steps=steps, device=device, compile=mode,
                                 ilp_time_limit=limit, grid_samples=samples, compile_step=compile_step)
        started = time.perf_counter()
        result = encode(volume, config)
        out.append({"compile": mode, "grid_samples": samples, "compile_step": compile_step,
                    "steps": result.contents.header.steps,
                    "seconds": round(time.perf_counter() - started, 2),
                    "fit_seconds": round(result.seconds["fit"], 2),
                    "steps_per_s": round(result.contents.header.steps / result.seconds["fit"], 2),
                    "psnr_data": round(result.metrics.psnr_data, 3), "bpv": round(result.bpv, 4)})
        print(f"  {name} grid compile={mode} samples={samples or 'all'}: {out[-1]['steps_per_s']} steps/s, "
              f"decoded PSNR {out[-1]['psnr_data']} dB", flush=True)
    return {"volume": name, "runs": out}


def machine(device: str) -> dict[str, Any]:
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {"device": device, "card": torch.cuda.get_device_name(0) if cuda else None,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": sys.version.split()[0]}


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--volumes", nargs="+", default=list(DEV_VOLUMES))
    p.add_argument("--steps", type=int, default=500, help="SIREN fit steps per run")
    p.add_argument("--grid-steps", type=int, default=200, help="grid encode steps (0: skip)")
    p.add_argument("--concurrent", type=int, default=8, help="simultaneous fits of the first volume")
    p.add_argument("--concurrent-steps", type=int, default=300)
    p.add_argument("--after", default="auto", help="the compile mode measured against eager")
    p.add_argument("--ttq-margin", type=float, default=0.5)
    p.add_argument("--ilp-time-limit", type=float, default=10.0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(args.device), "command": " ".join(sys.argv),
                              "load_before": os.getloadavg(), "bpv": 0.1, "siren": [], "grid": []}
    path, started = args.out / "device_check.json", time.perf_counter()

    def save() -> None:
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        report["load_after"] = os.getloadavg()
        path.write_text(json.dumps(report, indent=1) + "\n")

    print(f"device check on {report['machine']['card'] or args.device}", flush=True)
    volumes = {name: tifffile.imread(args.data / name) for name in args.volumes}
    plans = {}
    for index, (name, volume) in enumerate(volumes.items()):
        config = compress_config(bpv=0.1, steps=args.steps, device=args.device,
                                 ilp_time_limit=args.ilp_time_limit)
        plans[name] = plan(volume, config)
        report["siren"].append(siren_volume(name, plans[name], args.device, args.ttq_margin,
                                                args.after))
        save()
        if index == 0 and args.concurrent > 1:
            first = dataclasses.replace(plans[name], config=compress_config(
                bpv=0.1, steps=args.concurrent_steps, device=args.device,
                ilp_time_limit=args.ilp_time_limit))
            report["concurrent"] = {"volume": name, "runs": [concurrent(first, args.concurrent, mode)
                                                             for mode in ("off", args.after)]}
            for r in report["concurrent"]["runs"]:
                print(f"  {args.concurrent} concurrent fits, compile={r['compile']}: "
                      f"{r['total_steps_per_s']} steps/s in total", flush=True)
            save()
    if args.grid_steps > 0:
        for name, volume in volumes.items():
            report["grid"].append(grid_volume(name, volume, args.device, args.grid_steps,
                                              args.ilp_time_limit, args.after))
            save()
    save()
    print(f"wrote {path} after {report['wall_seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
