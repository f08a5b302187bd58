"""``napari-sci compress INPUT -o OUTPUT.sci.zarr``: a chunked store fitted as Dask tasks.

Kept apart from ``cli.py`` because its life is different: it resumes instead of overwriting, reports
chunks instead of fitting steps, and Ctrl-C keeps what is written (a rerun completes the store).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from napari_sci.base.config import STORE_SUFFIX, CompressConfig, StoreConfig, compress_config
from napari_sci.errors import SciConfigError, SciPathError

EXIT_OK, EXIT_INTERRUPTED = 0, 130


def store_settings(args: argparse.Namespace) -> tuple[CompressConfig, StoreConfig]:
    """The compress and store configs of the command line; refuses what a store cannot do."""
    from napari_sci.store.layout import is_store_path

    if not is_store_path(args.output):
        raise SciPathError(f"--chunks, --workers and --scheduler write a chunked store: name the output "
                           f"*{STORE_SUFFIX} (got {args.output})")
    if args.psnr is not None:
        raise SciConfigError("a chunked store is compressed to a size (--bpv or --ratio), not --psnr")
    if args.channel_axis is not None:
        raise SciConfigError("--channel-axis is not supported for chunked stores; give one 3D array")
    if args.overwrite:
        raise SciConfigError("a chunked store is resumed, never overwritten: rerun the same command to "
                             "complete it, or delete it to start again")
    config = compress_config(
        bpv=args.bpv, ratio=args.ratio, steps=args.steps, time_limit=args.time_limit,
        device=args.device, seed=args.seed, max_blocks=args.max_blocks, top_m=args.top_m,
        max_depth=args.depth, fr=args.fr, layers=args.layers, w0=args.w0, method=args.partition,
        rule=args.allocation, samples_per_block=args.samples, format=args.format,
        bits_per_param=args.bits_per_param, model=args.model, levels=args.levels,
        grid_hidden=args.grid_hidden, max_tiles=args.max_tiles, entropy=args.entropy)
    settings = StoreConfig(chunks=args.chunks if args.chunks is not None else StoreConfig.chunks,
                           workers=args.workers, scheduler=args.scheduler)
    return config, settings


class ChunkProgress:
    """A tqdm bar over chunks (chunks already written count as done from the start)."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bar: Any = None

    def plan(self, total: int, written: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if written:
            print(f"resuming: {written} of {total} chunks already written", file=self.stream)
        self.bar = tqdm(total=total, initial=written, unit="chunk", desc="chunks", file=self.stream,
                        dynamic_ncols=True)

    def report(self, report: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"last {report.n_bytes} B, {report.psnr:.1f} dB", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def compress_to_store(args: argparse.Namespace, out: TextIO) -> int:
    """Run a chunked compression from parsed ``compress`` arguments."""
    from napari_sci.store.run import compress_store

    config, settings = store_settings(args)
    progress = ChunkProgress(enabled=not args.quiet)
    try:
        summary = compress_store(args.input, args.output, config, settings, on_report=progress.report,
                                 on_plan=progress.plan)
    except KeyboardInterrupt:
        progress.close()
        print(f"napari-sci compress: interrupted; the chunks written so far are kept: rerun the same "
              f"command to complete {args.output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2), file=out)
        return EXIT_OK
    print(f"{args.input} -> {summary.output}\n"
          f"  volume     {'x'.join(map(str, summary.shape))} {summary.dtype}, chunks "
          f"{'x'.join(map(str, summary.chunks))} ({summary.n_chunks}: {summary.fitted} fitted, "
          f"{summary.skipped} already written)\n"
          f"  size       {summary.n_bytes} bytes of {summary.target_bytes} allowed | "
          f"{summary.bpv:.4f} BPV | every chunk at the same {config.budget.describe()}\n"
          f"  PSNR       {summary.psnr_min:.2f} to {summary.psnr_max:.2f} dB per chunk (data range)\n"
          f"  time       {summary.seconds:.1f} s on {summary.cluster}", file=out)
    return EXIT_OK
