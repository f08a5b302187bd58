"""``napari-sci compress a.tif b.tif … -o DIR``: several volumes, the same options, one file each.

Everything that can be refused is refused before any fitting: DIR must be a directory, no two inputs
may share a stem, no ``DIR/<stem>.sci`` may exist without ``--overwrite``, and every input's header
must read. Then each input is compressed by the single-input command, so a batch file is the same
file a single run writes. One failure is reported and the others go on; a summary (or with
``--json`` a list, failures included with an ``error``) ends the run, and the exit status is 1 if
any input failed.

``--workers N`` runs N compressions at once in separate processes (each its own CUDA context, so a
failure or a crash stays in its process): on a GPU, by default up to 4, so that several fits keep the
card busy (one alone leaves it idle between small kernels); on a CPU one at a time, so the threads set
by ``--threads`` (one core left to the GUI) are all a batch uses.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from napari_sci.errors import SciConfigError, SciError, SciPathError

Compress = Callable[[argparse.Namespace, TextIO], int]


class _HeaderRead(Exception):
    """Raised by the probe's ``before_load`` hook: the header parsed, stop before the data."""


def batch_outputs(inputs: Sequence[str], folder: str, overwrite: bool) -> list[Path]:
    """``folder/<stem>.sci`` for each input, after every check that needs no fitting."""
    from napari_sci.core.volume_files import read_volume
    from napari_sci.io.container import check_output_path

    directory = Path(folder)
    if not directory.is_dir():
        raise SciPathError(f"with several inputs, -o must be an existing directory; {folder} is not")
    outputs = [directory / f"{_stem(name)}.sci" for name in inputs]
    seen: dict[Path, str] = {}
    for name, output in zip(inputs, outputs):
        if output in seen:
            raise SciConfigError(f"{seen[output]} and {name} would both write {output}; "
                                 "rename one or compress them separately")
        seen[output] = name
        check_output_path(output, overwrite)

    def stop(shape: tuple[int, ...], dtype: Any) -> None:
        raise _HeaderRead

    for name in inputs:
        try:
            read_volume(name, before_load=stop)
        except _HeaderRead:
            continue
    return outputs


def _stem(name: str) -> str:
    """``a.tif`` → ``a``, ``a.ome.tif`` → ``a``, ``scan.2.npy`` → ``scan.2``, ``a.zarr/`` → ``a``."""
    stem = Path(name.rstrip("/")).name
    for suffix in (".tiff", ".tif", ".npy", ".zarr", ".ome"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
    return stem


def _one(args: argparse.Namespace, compress: Compress) -> dict[str, Any]:
    """Compress one input with the single-input command; its summary, or its error."""
    from napari_sci.cli import _fail  # the same one-line message the single command prints

    buffer = io.StringIO()
    try:
        code = compress(args, buffer)
    except SciError as error:
        _fail("compress", f"{args.input}: {error}")
        return {"input": args.input, "output": args.output, "error": " ".join(str(error).split())}
    except OSError as error:
        _fail("compress", f"{args.input}: {error}")
        return {"input": args.input, "output": args.output, "error": str(error)}
    if code != 0:
        return {"input": args.input, "output": args.output, "error": f"exit status {code}"}
    return dict(json.loads(buffer.getvalue()))


def _in_worker(args: argparse.Namespace) -> dict[str, Any]:
    """A worker process's job: its own torch threads, then one compression."""
    import torch

    from napari_sci.cli import _compress

    torch.set_num_threads(args.threads or 1)
    return _one(args, _compress)


def _default_workers(device: str, count: int) -> int:
    """Up to 4 fits at once on a GPU (one alone leaves it mostly idle); one at a time on a CPU."""
    if device == "cpu":
        return 1
    import torch

    return min(count, 4) if torch.cuda.is_available() else 1


def compress_many(args: argparse.Namespace, out: TextIO, compress: Compress) -> int:
    """Run the batch: check all, compress each (``args.workers`` at a time), summarise."""
    if args.channel_axis is not None:
        raise SciConfigError("--channel-axis takes one input; compress multi-channel files one by one")
    inputs = list(args.input)
    workers = _default_workers(args.device, len(inputs)) if args.workers is None else args.workers
    if workers < 1:
        raise SciConfigError(f"--workers must be at least 1, got {workers}")
    outputs = batch_outputs(inputs, args.output, args.overwrite)
    jobs = []
    for name, output in zip(inputs, outputs):
        job = argparse.Namespace(**vars(args))
        job.input, job.output, job.json = name, str(output), True
        job.workers = None  # the batch's own worker count; each input is one single-file compress
        job.quiet = args.quiet or workers > 1  # one progress bar at a time on the terminal
        jobs.append(job)
    if workers == 1:
        results = [_one(job, compress) for job in jobs]
    else:
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(_in_worker, jobs))
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps(results, indent=2), file=out)
    else:
        _print_table(results, out)
    return 1 if failed else 0


def _print_table(results: Sequence[dict[str, Any]], out: TextIO) -> None:
    for r in results:
        if "error" in r:
            print(f"FAILED {r['input']}: {r['error']}", file=out)
        else:
            print(f"ok     {r['input']} -> {r['output']}: {r['bytes']} bytes, {r['bpv']:.4f} BPV, "
                  f"PSNR {r['psnr_data']:.2f} dB, {r['seconds']['total']:.1f} s", file=out)
    done = sum("error" not in r for r in results)
    print(f"{done} of {len(results)} compressed", file=out)
