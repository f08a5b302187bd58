"""Speed and memory of napari-sci on this machine (issue 6), written as JSON.

    python benchmarks/speed.py --out benchmarks/results/speed
    python benchmarks/speed.py --sections trainer decode --volumes mri_t1_colin27.tif --out /tmp/speed

Sections (``--sections``, default all):

- ``matmul``: this machine's dense fp32 matmul FLOP/s (torch, 2048², best of 5) — the yardstick,
  measured again after the trainer section (the JSON keeps both; the fraction uses the larger).
- ``trainer``: fitting throughput of the batched trainer against a naive loop that fits the same
  networks one block at a time for the same steps (voxel evaluations per second, forward + backward),
  and the trainer's achieved FLOP/s as a fraction of the matmul figure. Each volume at BPV 0.1 and 0.25.
- ``ttq``: time to quality on the CT: decoded PSNR of whole encodes limited to each ``--ttq-limits``
  seconds, against HEVC's PSNR at the same BPV read from the classical benchmark's results.json,
  plus the training-PSNR trajectory of the longest run.
- ``decode``: whole-volume decode throughput, cold / warm latency of one slice through ``open_sci``,
  and HEVC's decode time of the same volume at the same BPV, in the same run.
- ``memory``: peak RSS of compress and of decode (each in a fresh interpreter) against the raw size.

Timings are wall-clock on a machine that may be shared: the JSON records the load average before and
after each section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from napari_sci.base.config import FitConfig, compress_config
from napari_sci.base.networks import BlockNetwork, layer_dims
from napari_sci.base.volume import value_range
from napari_sci.core.codec import encode, plan_blocks
from napari_sci.core.decoder import decode_contents
from napari_sci.core.events import FitFinished, FitProgress
from napari_sci.core.fit import fit_blocks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEV_VOLUMES = ("ct_aorta_totalseg.tif", "mri_t1_colin27.tif",
               "lsm_mousebrain_cells_cellfinder_crop16x256x256.tif",
               "neuron_sparse_rivulet_crop64x256x256.tif")
CLASSICAL = Path(__file__).resolve().parent / "results" / "classical" / "results.json"
SECTIONS = ("matmul", "trainer", "ttq", "decode", "memory")


def load() -> dict[str, float]:
    one, five, _ = os.getloadavg()
    return {"load_1min": round(one, 2), "load_5min": round(five, 2)}


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best-of-N dense fp32 matmul rate: what this CPU can do at best with torch's BLAS."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def _fit_seconds(volume: np.ndarray, blocks: Sequence[Any], networks: Sequence[Any], lows: np.ndarray,
                 highs: np.ndarray, span: float, spec: Any, fit: FitConfig) -> tuple[float, int, float]:
    """Seconds from before the networks are built (a compile counts) to the end; steps; final PSNR."""
    started = time.perf_counter()
    for event in fit_blocks(volume, blocks, networks, lows, highs, span, spec, fit):
        if isinstance(event, FitFinished):
            return time.perf_counter() - started, event.steps, event.psnr
    raise AssertionError("fit_blocks ended without FitFinished")


def _mults_per_sample(ndim: int, net: BlockNetwork, layers: int) -> int:
    """Multiply-adds of one forward evaluation of a funnel SIREN (the matrices, not the biases)."""
    return sum(fan_in * fan_out for fan_in, fan_out in layer_dims(ndim, net, layers))


def trainer(volume: np.ndarray, bpv: float, steps: int, rounds: int = 2,
            compiled: Sequence[str] = ()) -> dict[str, Any]:
    """Batched trainer (eager, and each ``compiled`` mode) vs a per-block loop over the same networks,
    same steps, same samples."""
    config = compress_config(bpv=bpv, steps=steps, device="cpu")
    plan = plan_blocks(volume, config)
    blocks, networks = plan.partition.blocks, plan.networks
    lows = np.array([float(volume[b.slices].min()) for b in blocks])
    highs = np.array([float(volume[b.slices].max()) for b in blocks])
    for i, net in enumerate(networks):
        if net.is_constant:
            lows[i] = highs[i] = float(volume[blocks[i].slices].mean())
    span = value_range(volume).span
    spec, fit = config.network, config.fit
    trained = [i for i, n in enumerate(networks) if not n.is_constant]
    samples = [min(fit.samples_per_block, blocks[i].voxels) for i in trained]
    evaluations = steps * sum(samples)
    mults = sum(s * _mults_per_sample(volume.ndim, networks[i], spec.layers)
                for s, i in zip(samples, trained))
    flops = 3 * 2 * mults * steps  # forward, and backward ≈ twice the forward
    # Alternate the two and keep each one's best round: on a shared machine the load drifts, and a
    # single batched-then-loop pair measured the drift as much as the trainers.
    eager = dataclasses.replace(fit, compile="off")
    batched = naive = math.inf
    best = {mode: math.inf for mode in compiled}
    psnr: dict[str, float] = {}
    for _ in range(rounds):
        seconds, done, psnr["off"] = _fit_seconds(volume, blocks, networks, lows, highs, span, spec, eager)
        batched = min(batched, seconds)
        for mode in compiled:  # interleaved with eager: the load drifts between rounds, not within
            seconds, _, psnr[mode] = _fit_seconds(volume, blocks, networks, lows, highs, span, spec,
                                                  dataclasses.replace(fit, compile=mode))
            best[mode] = min(best[mode], seconds)
        naive = min(naive, sum(_fit_seconds(volume, [blocks[i]], [networks[i]], lows[i:i + 1],
                                            highs[i:i + 1], span, spec, eager)[0] for i in trained))
    return {"bpv": bpv, "blocks": len(blocks), "networks": len(trained), "parameters": sum(plan.params),
            "steps": done, "rounds": rounds, "evaluations": evaluations, "batched_seconds": batched,
            "naive_seconds": naive, "batched_evals_per_s": evaluations / batched,
            "naive_evals_per_s": evaluations / naive, "speedup": naive / batched,
            "useful_flops": flops, "batched_flops_per_s": flops / batched,
            "batched_steps_per_s": done / batched, "final_psnr": psnr["off"],
            "compiled": [{"mode": mode, "seconds": best[mode], "steps_per_s": done / best[mode],
                          "flops_per_s": flops / best[mode], "speedup_vs_eager": batched / best[mode],
                          "final_psnr": psnr[mode]} for mode in compiled]}


def _encode_events(volume: np.ndarray, config: Any) -> tuple[Any, list[tuple[float, float]]]:
    trajectory: list[tuple[float, float]] = []

    def record(event: object) -> None:
        if isinstance(event, FitProgress):
            trajectory.append((round(event.elapsed, 2), round(event.psnr, 3)))

    return encode(volume, config, on_event=record), trajectory


def hevc_psnr(volume_name: str, bpv: float) -> float | None:
    """HEVC's data-range PSNR at ``bpv`` from the classical benchmark run, if it is there."""
    if not CLASSICAL.exists():
        return None
    results = json.loads(CLASSICAL.read_text())["results"]
    for r in results:
        if r["codec"] == "hevc" and r["volume"] == Path(volume_name).stem and r["target_bpv"] == bpv:
            return float(r["psnr_data"])
    return None


def time_to_quality(volume: np.ndarray, name: str, bpv: float, limits: Sequence[float]) -> dict[str, Any]:
    """Whole encodes (fit, quantisation, coding) with a wall-clock limit; the decoded PSNR of each."""
    target = hevc_psnr(name, bpv)
    runs = []
    for limit in limits:
        config = compress_config(bpv=bpv, steps=10**7, time_limit=limit, device="cpu")
        result, trajectory = _encode_events(volume, config)
        runs.append({"time_limit": limit, "steps": result.contents.header.steps,
                     "encode_seconds": result.seconds["total"], "fit_seconds": result.seconds["fit"],
                     "psnr_data": result.metrics.psnr_data, "bpv": result.bpv,
                     "reaches_hevc": None if target is None else result.metrics.psnr_data >= target,
                     "training_psnr_trajectory": trajectory[:: max(1, len(trajectory) // 60)]})
    return {"volume": name, "bpv": bpv, "hevc_psnr_data": target, "runs": runs}


def _timed(function: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def decode_speed(volume: np.ndarray, name: str, bpv: float, steps: int, folder: Path) -> dict[str, Any]:
    """Decode throughput and slice latency of napari-sci, and HEVC's decode time, same volume and BPV."""
    from napari_sci.core.lazy import open_sci

    result = encode(volume, compress_config(bpv=bpv, steps=steps, device="cpu"))
    path = folder / f"{Path(name).stem}.sci"
    result.write(str(path), overwrite=True)
    _, whole = _timed(decode_contents, result.contents)
    array, open_seconds = _timed(open_sci, path)
    middle = volume.shape[0] // 2
    _, cold = _timed(array.__getitem__, middle)
    _, cached = _timed(array.__getitem__, middle)
    _, warm = _timed(array.__getitem__, middle + 1)
    out = {"volume": name, "bpv": result.bpv, "slice_shape": list(volume.shape[1:]),
           "whole_seconds": whole, "voxels_per_s": volume.size / whole, "open_seconds": open_seconds,
           "slice_cold_seconds": cold, "slice_warm_next_seconds": warm,
           "slice_cached_seconds": cached}
    out.update(_hevc_decode(volume, bpv))
    return out


def _hevc_decode(volume: np.ndarray, bpv: float) -> dict[str, Any]:
    from napari_sci.bench.codecs import make_codec
    from napari_sci.bench.codecs.base import Target
    from napari_sci.bench.settings import BenchSettings

    codec = make_codec("hevc", BenchSettings(codecs=("hevc",)))
    reason = codec.missing()
    if reason is not None:
        return {"hevc_missing": reason}
    compressed = codec.compress(volume, Target(bpv, volume.size))
    decoded, seconds = _timed(codec.decompress, compressed.blob)
    assert decoded.shape == volume.shape
    return {"hevc_bpv": 8 * len(compressed.blob) / volume.size, "hevc_whole_seconds": seconds,
            "hevc_voxels_per_s": volume.size / seconds}


CHILD = """
import json, sys
import tifffile
import napari_sci
from napari_sci.base.volume import check_volume
mode, source, path, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "compress":
    volume = tifffile.imread(source)
    raw = volume.nbytes
    napari_sci.compress(volume, bpv=0.1, steps=steps, device="cpu").write(path, overwrite=True)
else:
    raw = napari_sci.decode(path).nbytes
# VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss across exec
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak_rss": hwm * 1024, "raw": raw}))
"""


def peak_memory(source: Path, steps: int, folder: Path) -> dict[str, Any]:
    """Peak RSS of a whole compress and a whole decode, each in a fresh interpreter."""
    path = folder / f"{source.stem}-memory.sci"
    out: dict[str, Any] = {"volume": source.name}
    for mode in ("compress", "decode"):
        done = subprocess.run([sys.executable, "-c", CHILD, mode, str(source), str(path), str(steps)],
                              capture_output=True, text=True, check=True)
        record = json.loads(done.stdout.strip().splitlines()[-1])
        out[f"{mode}_peak_rss"] = record["peak_rss"]
        out["raw_bytes"] = record["raw"]
        budget = 3 * record["raw"] + 2**30
        out[f"{mode}_within_3x_raw_plus_1GB"] = record["peak_rss"] <= budget
    return out


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f} MB"


def speed_markdown(report: dict[str, Any]) -> str:
    """The JSON as tables for docs/benchmarks.md (every figure read from the report)."""
    m = report["machine"]
    lines = [f"Made by `{report['command']}` on {m['cpu']} ({m['cores']} cores, {m['torch_threads']} "
             f"torch threads), torch {m['torch']}, CUDA: {m['cuda'] or 'none'}.", ""]
    if "matmul" in report:
        lines += [f"Dense fp32 matmul (2048², best of 5): **{report['matmul']['flops_per_s'] / 1e9:.1f} "
                  f"GFLOP/s** (load average {report['matmul']['load_1min']}).", ""]
    peaks = [report[k]["flops_per_s"] for k in ("matmul", "matmul_after") if k in report]
    peak = max(peaks) if peaks else None
    if "matmul_after" in report:
        lines += [f"Matmul again after the trainer runs: {report['matmul_after']['flops_per_s'] / 1e9:.1f} "
                  "GFLOP/s; the share below uses the larger figure.", ""]
    if "trainer" in report:
        lines += ["| volume | BPV | blocks | networks | steps | batched evals/s | per-block loop evals/s "
                  "| speed-up | trainer GFLOP/s | of matmul | load |", "|" + "---|" * 11]
        for r in report["trainer"]:
            share = f"{100 * r['batched_flops_per_s'] / peak:.0f} %" if peak else "–"
            lines.append(f"| {Path(r['volume']).stem} | {r['bpv']:g} | {r['blocks']} | {r['networks']} "
                         f"| {r['steps']} | {r['batched_evals_per_s']:,.0f} | {r['naive_evals_per_s']:,.0f} "
                         f"| {r['speedup']:.2f}× | {r['batched_flops_per_s'] / 1e9:.2f} | {share} "
                         f"| {r['load_1min']} |")
        lines.append("")
        compiled = [(r, c) for r in report["trainer"] for c in r.get("compiled", [])]
        if compiled:
            lines += ["| volume | BPV | steps | eager steps/s | compile mode | compiled steps/s (compile "
                      "included) | vs eager | eager PSNR | compiled PSNR |", "|" + "---|" * 9]
            for r, c in compiled:
                lines.append(f"| {Path(r['volume']).stem} | {r['bpv']:g} | {r['steps']} "
                             f"| {r['batched_steps_per_s']:.2f} | {c['mode']} | {c['steps_per_s']:.2f} "
                             f"| {c['speedup_vs_eager']:.2f}× | {r['final_psnr']:.3f} "
                             f"| {c['final_psnr']:.3f} |")
            lines.append("")
    if "ttq" in report:
        t = report["ttq"]
        hevc = "not measured" if t["hevc_psnr_data"] is None else f"{t['hevc_psnr_data']:.2f} dB"
        lines += [f"Time to quality, {Path(t['volume']).stem} at {t['bpv']:g} BPV (HEVC: {hevc}):", "",
                  "| time limit s | steps | encode s | decoded PSNR dB | reaches HEVC |", "|" + "---|" * 5]
        for r in t["runs"]:
            lines.append(f"| {r['time_limit']:g} | {r['steps']} | {r['encode_seconds']:.0f} "
                         f"| {r['psnr_data']:.2f} | {r['reaches_hevc']} |")
        lines.append("")
    if "decode" in report:
        lines += ["| volume | BPV | whole volume s | voxels/s | slice | slice cold ms | next slice ms "
                  "| cached ms | HEVC whole s | HEVC voxels/s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in report["decode"]:
            hevc_s, hevc_rate = r.get("hevc_whole_seconds"), r.get("hevc_voxels_per_s")
            hevc = "| – | – |" if hevc_s is None else f"| {hevc_s:.2f} | {hevc_rate:,.0f} |"
            lines.append(f"| {Path(r['volume']).stem} | {r['bpv']:.3f} | {r['whole_seconds']:.2f} "
                         f"| {r['voxels_per_s']:,.0f} | {'×'.join(map(str, r['slice_shape']))} "
                         f"| {1000 * r['slice_cold_seconds']:.0f} "
                         f"| {1000 * r['slice_warm_next_seconds']:.0f} "
                         f"| {1000 * r['slice_cached_seconds']:.2f} {hevc}")
        lines.append("")
    if "memory" in report:
        lines += ["| volume | raw | compress peak RSS | decode peak RSS | limit 3× raw + 1 GB | within |",
                  "|---|---|---|---|---|---|"]
        for r in report["memory"]:
            ok = r["compress_within_3x_raw_plus_1GB"] and r["decode_within_3x_raw_plus_1GB"]
            lines.append(f"| {Path(r['volume']).stem} | {_mb(r['raw_bytes'])} "
                         f"| {_mb(r['compress_peak_rss'])} | {_mb(r['decode_peak_rss'])} "
                         f"| {_mb(3 * r['raw_bytes'] + 2**30)} | {ok} |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--volumes", nargs="+", default=list(DEV_VOLUMES))
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--trainer-steps", type=int, default=50)
    p.add_argument("--trainer-rounds", type=int, default=2, help="alternating rounds, best of each")
    p.add_argument("--trainer-bpv", type=float, nargs="+", default=[0.1, 0.25])
    p.add_argument("--trainer-compile", nargs="*", default=["default"],
                   help="torch.compile modes timed against the eager trainer (compile time included)")
    p.add_argument("--ttq-volume", default="ct_aorta_totalseg.tif")
    p.add_argument("--ttq-limits", type=float, nargs="+", default=[60.0, 300.0])
    p.add_argument("--decode-steps", type=int, default=50, help="fit steps of the files decoded")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "command": " ".join(["python", *sys.argv])}
    path = args.out / "speed.json"

    def save(section: str, value: Any) -> None:
        report[section] = value
        path.write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "speed.md").write_text(speed_markdown(report))
        print(f"speed: {section} done", file=sys.stderr)

    volumes = {name: tifffile.imread(args.data / name) for name in args.volumes}
    if "matmul" in args.sections:
        save("matmul", {"flops_per_s": matmul_flops(), **load()})
    if "trainer" in args.sections:
        rows = []
        for name, volume in volumes.items():
            for bpv in args.trainer_bpv:
                measured = trainer(volume, bpv, args.trainer_steps, args.trainer_rounds,
                                   args.trainer_compile)
                rows.append({"volume": name, **measured, **load()})
                save("trainer", rows)
        save("matmul_after", {"flops_per_s": matmul_flops(), **load()})
    if "ttq" in args.sections:
        volume = volumes.get(args.ttq_volume)
        if volume is None:
            volume = tifffile.imread(args.data / args.ttq_volume)
        save("ttq", {**time_to_quality(volume, args.ttq_volume, 0.1, args.ttq_limits), **load()})
    with tempfile.TemporaryDirectory() as scratch:
        if "decode" in args.sections:
            rows = []
            for name, volume in volumes.items():
                rows.append({**decode_speed(volume, name, 0.1, args.decode_steps, Path(scratch)),
                             **load()})
                save("decode", rows)
        if "memory" in args.sections:
            rows = []
            for name in volumes:
                rows.append({**peak_memory(args.data / name, args.decode_steps, Path(scratch)),
                             **load()})
                save("memory", rows)
    return 0


if __name__ == "__main__":
    sys.exit(run())
