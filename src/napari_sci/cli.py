"""The ``napari-sci`` command line: compress, decompress, info, evaluate (and bench).

``main(argv) -> int`` is called in-process by the tests. Errors the user can fix print one line on
stderr and exit 1; Ctrl-C exits 130; nothing half-written is left behind in either case.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from napari_sci import __version__
from napari_sci.base.config import (
    ACCURACY_THRESHOLDS,
    ALLOCATION_RULES,
    COMPILE_MODES,
    ENTROPY_MODELS,
    MODEL_FAMILIES,
    PARTITION_METHODS,
    RESIDUALS,
    UPSAMPLINGS,
    AllocationConfig,
    CodingConfig,
    CompressConfig,
    FitConfig,
    GridConfig,
    NetworkSpec,
    PartitionConfig,
    StoreConfig,
    other_family_settings,
)
from napari_sci.errors import SciConfigError, SciError, SciPathError

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130
KIND_NAMES = {0: "constant", 1: "siren", 2: "mean", 3: "grid", 4: "exact"}


def _finest_level(text: str) -> int | str:
    """``auto`` or a level number, for ``--finest-level``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a level number, got {text!r}") from None


def _block_shape(text: str) -> tuple[int, int, int]:
    """``--residual-block``: ``ZxYxX`` voxels, e.g. ``4x16x16``."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected three sizes as ZxYxX (e.g. 4x16x16), got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _add_compress(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="compress a volume to a .sci file",
                       description="Compress a TIFF, .npy or zarr volume to a .sci file of at most "
                                   "the requested size (every byte of the file counts).")
    p.add_argument("input", nargs="+", help="volume(s) to compress (.tif/.tiff, .npy, .zarr)")
    p.add_argument("-o", "--output", required=True,
                   help="the .sci file to write; with several inputs, a directory for <stem>.sci each")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--bpv", type=float, help="target bits per voxel")
    size.add_argument("--ratio", type=float, help="target compression ratio (raw bytes / file bytes)")
    size.add_argument("--psnr", type=float,
                      help="target PSNR in dB (data range): the smallest file that reaches it")
    fit, part, net, coding = FitConfig, PartitionConfig, NetworkSpec, CodingConfig  # the defaults
    p.add_argument("--model", choices=MODEL_FAMILIES, default=CompressConfig.model,
                   help="grid: latent-grid pyramids with a shared synthesis, trained for rate and "
                        "distortion (format 3); siren: the paper's funnel SIRENs (format 2 or 1); the "
                        "options marked siren: or grid: apply to that model only (default %(default)s)")
    p.add_argument("--steps", type=int, default=fit.steps, help="fitting steps (default %(default)s)")
    p.add_argument("--time-limit", type=float, default=fit.time_limit, help="stop fitting after SECONDS")
    p.add_argument("--device", default=fit.device, help="auto, cpu or cuda[:N] (default %(default)s)")
    p.add_argument("--seed", type=int, default=fit.seed, help="random seed (default %(default)s)")
    p.add_argument("--compile", choices=COMPILE_MODES, default=fit.compile,
                   help="siren: how a training step runs: off (eager), a torch.compile mode, or auto "
                        "(CUDA graphs on a GPU, the measured best on a CPU) (default %(default)s)")
    p.add_argument("--max-blocks", type=int, default=part.max_blocks,
                   help="a_max, most blocks (default %(default)s)")
    p.add_argument("--top-m", type=int, default=part.top_m,
                   help="M of the spectrum concentration (default %(default)s)")
    p.add_argument("--depth", type=int, default=part.max_depth,
                   help="block tree levels below the root (default %(default)s)")
    p.add_argument("--fr", type=float, default=net.fr, help="siren: funnel ratio (default %(default)s)")
    p.add_argument("--layers", type=int, default=net.layers,
                   help="siren: layers per network (default %(default)s)")
    p.add_argument("--w0", type=float, default=net.w0,
                   help="siren: first-layer frequency (default %(default)s)")
    p.add_argument("--partition", choices=PARTITION_METHODS, default=part.method)
    p.add_argument("--allocation", choices=ALLOCATION_RULES, default=AllocationConfig.rule,
                   help="siren: how the parameters are shared among the blocks (default %(default)s)")
    p.add_argument("--samples", type=int, default=fit.samples_per_block,
                   help="siren: voxels per block per step (default %(default)s)")
    p.add_argument("--format", type=int, choices=(1, 2), default=coding.format_version,
                   help="siren: 2: quantised, entropy-coded weights; 1: float32 weights as the paper "
                        "(default %(default)s)")
    p.add_argument("--bits-per-param", type=float, default=coding.bits_per_param,
                   help="siren, format 2: expected coded bits per parameter, sizes the networks "
                        "(default %(default)s)")
    grid = GridConfig
    p.add_argument("--levels", type=int, default=grid.levels,
                   help="grid: latent levels per tile (default %(default)s)")
    p.add_argument("--grid-hidden", type=int, default=grid.grid_hidden,
                   help="grid: synthesis width (default %(default)s)")
    p.add_argument("--max-tiles", type=int, default=grid.max_tiles,
                   help="grid: most tiles (default %(default)s)")
    p.add_argument("--finest-level", type=_finest_level,
                   default="auto" if grid.finest_level is None else grid.finest_level,
                   help="grid: finest latent level trained, 0 = full resolution; finer levels stay "
                        "zero and cost no fitting time; auto: 1 for volumes with little fine detail, "
                        "else 0 (default %(default)s)")
    p.add_argument("--fine-updates", choices=("sparse", "dense"),
                   default="sparse" if grid.sparse_fine else "dense",
                   help="grid: sparse: each step updates the full-resolution latents its drawn voxels "
                        "touch; dense: every latent every step (default %(default)s)")
    p.add_argument("--entropy", choices=ENTROPY_MODELS, default=grid.entropy,
                   help="grid: how latents are coded: context (each latent's scale from its decoded "
                        "neighbours and the coarser level), predictive (context, and each latent's "
                        "mean predicted from the same samples) or factorised (one scale per tile "
                        "level; needed by --fine-updates sparse) (default %(default)s)")
    p.add_argument("--upsampling", choices=UPSAMPLINGS, default=grid.upsampling,
                   help="grid: how latent levels reach the voxels: linear, or bspline (the cubic "
                        "B-spline on level 1's samples, then linear; context or predictive entropy "
                        "only); auto: bspline unless --entropy factorised (default %(default)s)")
    p.add_argument("--residual", choices=RESIDUALS, default=grid.residual,
                   help="grid: dct: latents up to 0.02 BPV with the B-spline, 0.1 with linear "
                        "upsampling (at most 3/4 of the budget, leaving at least 0.01 BPV) and the "
                        "rest spent on DCT blocks of what they leave (3-D, context entropy); none; "
                        "auto: dct for 3-D volumes from 0.04 BPV, 0.02 with the B-spline (default "
                        "%(default)s)")
    p.add_argument("--residual-grid-bpv", type=float, default=grid.residual_grid_bpv,
                   help="grid, with a residual layer: the most bits per voxel the latents get, the "
                        "rest going to the DCT blocks (default: 0.02 with the B-spline, 0.1 linear)")
    p.add_argument("--residual-block", type=_block_shape, default=grid.residual_block, metavar="ZxYxX",
                   help="grid, with a residual layer: the DCT blocks' shape, e.g. 4x16x16 (powers of two "
                        "2-32, 512 to 4096 voxels); default: the best of 8x8x8, 16x16x16, 4x16x16, "
                        "4x32x32 and 2x32x32 at the budget")
    p.add_argument("--loop-filter", action=argparse.BooleanOptionalAction, default=grid.loop_filter,
                   help="grid, with a residual layer: least-squares loop filters over the decoded tiles "
                        "where they pay for their bytes (default %(default)s)")
    p.add_argument("--exact-tiles", action=argparse.BooleanOptionalAction, default=grid.exact_tiles,
                   help="grid: store every tile losslessly when that fits the budget (sparse volumes), "
                        "fitting nothing (default %(default)s)")
    p.add_argument("--grid-samples", type=int, default=grid.grid_samples,
                   help="grid: voxels drawn per training step, 0 = every voxel (default %(default)s)")
    p.add_argument("--grid-lr", type=float, default=grid.grid_lr,
                   help="grid: Adam's peak learning rate (cosine-decayed; the latents' is 10x) "
                        "(default %(default)s)")
    p.add_argument("--channel-axis", type=int, default=None, metavar="AXIS",
                   help="for 4D+ input (channels, time): compress each index along AXIS to its own "
                        "file, OUTPUT with _c0, _c1, ... before the suffix")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with several inputs: compress N at once, in separate processes (default: up to "
                        "4 on a GPU, where several fits share the card; 1 on a CPU); with a *.sci.zarr "
                        "OUTPUT: worker processes of the LocalCluster (default: cores - 1, at least 1; "
                        "0 fits the chunks in this process, without Dask)")
    store = p.add_argument_group("chunked stores (OUTPUT named *.sci.zarr: volumes larger than memory)")
    store.add_argument("--chunks", type=int, default=None, metavar="VOXELS",
                       help=f"side of the cubic chunks, each fitted as one Dask task "
                            f"(default {StoreConfig.chunks})")
    store.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="send the chunks to the dask.distributed scheduler at ADDRESS instead")


def _add_others(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decompress", help="decode a .sci file (or a region of it) to TIFF or .npy")
    p.add_argument("input", help="the .sci file")
    p.add_argument("-o", "--output", required=True, help="output .tif/.tiff or .npy")
    p.add_argument("--roi", help="region as z0:z1,y0:y1,x0:x1 (Python slices, any part may be empty)")
    p.add_argument("--no-deblock", action="store_true", help="skip the deblocking filter")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")

    p = sub.add_parser("info", help="describe a .sci file")
    p.add_argument("input", help="the .sci file")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("evaluate", help="compare a reconstruction (.sci or image) with its original")
    p.add_argument("original", help="original volume (.tif/.tiff, .npy, .zarr)")
    p.add_argument("reconstruction", help=".sci file or decoded volume")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(ACCURACY_THRESHOLDS),
                   help="raw intensities τ for the binarised accuracy Acc(τ) (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-sci", description="SCI neural compression of 3D biomedical volumes.")
    parser.add_argument("--version", action="version", version=f"napari-sci {__version__}")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for PyTorch (default: PyTorch's choice, one per core). On a "
                             "machine shared with other jobs, fewer threads than cores avoids "
                             "oversubscription, which can slow fitting by an order of magnitude")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_compress(sub)
    _add_others(sub)
    from napari_sci.bench.cli import add_bench_parser

    add_bench_parser(sub)
    return parser


def _fmt(value: float, digits: int = 2) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _check_output(source: str, target: str | Path, overwrite: bool) -> None:
    """Refuse an output that would replace the input, exists, or has no folder, before any work."""
    from napari_sci.io.container import check_output_path

    output = Path(target)
    if output.resolve() == Path(source).resolve():
        raise SciPathError("the output would overwrite the input; choose another output path")
    check_output_path(output, overwrite)


def _channel_outputs(output: str, count: int) -> list[Path]:
    path = Path(output)
    return [path.with_name(f"{path.stem}_c{i}{path.suffix}") for i in range(count)]


def _channel_axis(axis: int | None, ndim: int) -> int | None:
    if axis is None:
        return None
    if not -ndim <= axis < ndim:
        raise SciConfigError(f"--channel-axis {axis} is out of range for a {ndim}D input; "
                             f"use 0..{ndim - 1}")
    return axis % ndim


def _per_encode_shape(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    if axis is None:
        return shape
    return shape[:axis] + shape[axis + 1:]


def _write_all(results: Sequence[Any], outputs: Sequence[Path], overwrite: bool) -> None:
    """Write every file or none: on any failure the files written so far are removed again."""
    written: list[Path] = []
    try:
        for result, output in zip(results, outputs):
            result.write(str(output), overwrite=overwrite)
            written.append(output)
    except BaseException:
        if not overwrite:
            for path in written:
                path.unlink(missing_ok=True)
        raise


def _summary(args: argparse.Namespace, output: Path, shape: tuple[int, ...], dtype: Any,
             result: Any) -> dict[str, Any]:
    return {
        "input": str(args.input), "output": str(output), "shape": list(shape),
        "dtype": str(dtype), "blocks": len(result.partition.blocks),
        "networks": sum(not n.is_constant for n in result.networks), "parameters": result.n_params,
        "bytes": result.n_bytes, "target_bytes": result.target_bytes, "bpv": result.bpv,
        "ratio": result.ratio, **result.metrics.as_dict(), "steps": result.contents.header.steps,
        "seconds": result.seconds,
    }


def _print_summary(summary: dict[str, Any], result: Any, out: TextIO) -> None:
    m = result.metrics
    header = result.contents.header
    if header.version >= 3:
        kinds = header.blocks["kind"].tolist()
        counts = ", ".join(f"{kinds.count(k)} {KIND_NAMES[k]}" for k in sorted(set(kinds)))
        parts = f"  tiles      {summary['blocks']} ({counts}; latent-grid model, format 3)\n"
    else:
        parts = (f"  blocks     {summary['blocks']} ({summary['networks']} networks, "
                 f"{result.n_params} parameters)\n")
    print(f"{summary['input']} -> {summary['output']}\n"
          f"  volume     {'x'.join(map(str, summary['shape']))} {summary['dtype']}\n"
          f"{parts}"
          f"  size       {result.n_bytes} bytes of {result.target_bytes} allowed | "
          f"{result.bpv:.4f} BPV | ratio {result.ratio:.1f}:1\n"
          f"  PSNR       {_fmt(m.psnr_data)} dB (data range) | {_fmt(m.psnr_dtype)} dB (dtype range)\n"
          f"  SSIM       {_fmt(m.ssim, 4)} | max abs error {m.max_abs_error:g}\n"
          f"  time       {result.seconds['total']:.1f} s (fit {result.seconds['fit']:.1f} s, "
          f"{result.contents.header.steps} steps)", file=out)


def _compress(args: argparse.Namespace, out: TextIO) -> int:
    if isinstance(args.input, list):  # from the parser: one input, or a batch into a directory
        if len(args.input) > 1:
            from napari_sci.cli_batch import compress_many

            return compress_many(args, out, _compress)
        args.input = args.input[0]
    from napari_sci.base.config import compress_config
    from napari_sci.base.volume import check_layout
    from napari_sci.cli_progress import EncodeProgress
    from napari_sci.core.codec import encode
    from napari_sci.core.target_quality import FIRST_GUESS_BPV, QualitySearch, compress_to_psnr
    from napari_sci.core.volume_files import read_volume
    from napari_sci.store.layout import is_store_path

    if is_store_path(args.output) or any(v is not None for v in (args.chunks, args.workers,
                                                                   args.scheduler)):
        from napari_sci.cli_store import compress_to_store

        return compress_to_store(args, out)
    if args.channel_axis is None:
        _check_output(args.input, args.output, args.overwrite)
    config = compress_config(
        bpv=FIRST_GUESS_BPV if args.psnr is not None else args.bpv, ratio=args.ratio, steps=args.steps,
        time_limit=args.time_limit, compile=args.compile,
        device=args.device, seed=args.seed, max_blocks=args.max_blocks, top_m=args.top_m,
        max_depth=args.depth, fr=args.fr, layers=args.layers, w0=args.w0, method=args.partition,
        rule=args.allocation, samples_per_block=args.samples, format=args.format,
        bits_per_param=args.bits_per_param, model=args.model, levels=args.levels,
        grid_hidden=args.grid_hidden, max_tiles=args.max_tiles, grid_samples=args.grid_samples,
        finest_level=None if args.finest_level == "auto" else args.finest_level,
        sparse_fine=args.fine_updates == "sparse", entropy=args.entropy,
        upsampling=args.upsampling, residual=args.residual, exact_tiles=args.exact_tiles,
        grid_lr=args.grid_lr, residual_grid_bpv=args.residual_grid_bpv, residual_block=args.residual_block,
        loop_filter=args.loop_filter)

    def before_load(shape: tuple[int, ...], dtype: Any) -> None:
        # refuse what could not be compressed (4D without --channel-axis, too large) before loading
        check_layout(_per_encode_shape(shape, _channel_axis(args.channel_axis, len(shape))), dtype)

    volume, spacing = read_volume(args.input, before_load=before_load)
    axis = _channel_axis(args.channel_axis, volume.ndim)
    if axis is None:
        volumes, outputs = [volume], [Path(args.output)]
    else:
        volumes = [volume.take(i, axis=axis) for i in range(volume.shape[axis])]
        outputs = _channel_outputs(args.output, len(volumes))
        spacing = None if spacing is None or len(spacing) != volume.ndim else (
            _per_encode_shape(spacing, axis))
        for output in outputs:
            _check_output(args.input, output, args.overwrite)
    results = []
    for channel in volumes:
        with EncodeProgress(enabled=not args.quiet) as progress:
            if args.psnr is not None:
                results.append(compress_to_psnr(channel, config, QualitySearch(args.psnr), spacing,
                                                progress))
            else:
                results.append(encode(channel, config, spacing=spacing, on_event=progress))
    _write_all(results, outputs, args.overwrite)
    summaries = [_summary(args, o, v.shape, v.dtype, r) for o, v, r in zip(outputs, volumes, results)]
    if args.json:
        print(json.dumps(summaries[0] if axis is None else summaries, indent=2), file=out)
        return EXIT_OK
    for summary, result in zip(summaries, results):
        _print_summary(summary, result, out)
    return EXIT_OK


def _parse_roi(text: str, ndim: int) -> tuple[slice, ...]:
    parts = text.split(",")
    if len(parts) != ndim:
        raise SciError(f"--roi needs {ndim} comma-separated ranges like 0:10, got {text!r}")
    roi = []
    for part in parts:
        bounds = part.split(":")
        if len(bounds) != 2:
            raise SciError(f"--roi range {part!r} must look like start:stop")
        try:
            roi.append(slice(*(int(b) if b.strip() else None for b in bounds)))
        except ValueError as error:
            raise SciError(f"--roi range {part!r} is not start:stop integers") from error
    return tuple(roi)


def _decompress(args: argparse.Namespace, out: TextIO) -> int:
    from napari_sci.core.lazy import open_sci
    from napari_sci.core.volume_files import write_volume

    _check_output(args.input, args.output, args.overwrite)
    array = open_sci(args.input, deblocking=not args.no_deblock)
    roi = _parse_roi(args.roi, array.ndim) if args.roi else (slice(None),) * array.ndim
    decoded = array[roi]
    if decoded.size == 0:
        raise SciError(f"--roi {args.roi} selects no voxels of a {array.shape} volume")
    write_volume(args.output, decoded, spacing=array.header.spacing, overwrite=args.overwrite)
    print(f"{args.input} -> {args.output}: {'x'.join(map(str, decoded.shape))} {decoded.dtype}",
          file=out)
    return EXIT_OK


def describe(path: str) -> dict[str, Any]:
    """Everything ``info`` prints, as a dict."""
    from napari_sci.base.networks import param_count
    from napari_sci.core.lazy import open_sci
    from napari_sci.io.format import GRID_KIND_OF_MODEL, grid_section

    array = open_sci(path)
    h = array.header
    networks = [b for b in h.blocks if b["kind"] == 1]
    model: dict[str, Any] = {"family": h.family}
    if h.family == "grid":
        section = grid_section(h)
        entropy, upsampling, residual = GRID_KIND_OF_MODEL[h.model]
        model.update(entropy=entropy, upsampling=upsampling, residual=residual, model_id=h.model,
                     levels=section.layout.levels, hidden=section.layout.hidden,
                     layers=section.layout.layers, latent_step=section.latent_step, lam=section.lam,
                     synthesis_bytes=len(section.synthesis), loop_filter=section.filtered,
                     shared_filter_radius=section.shared_filter.radius if section.shared_filter else 0)
    return {
        "path": str(path), "format_version": h.version, "model": model, "shape": list(h.shape),
        "dtype": str(h.dtype),
        "spacing": list(h.spacing), "value_range": [h.value_min, h.value_max],
        "bytes": array.file_size, "bpv": array.bpv, "ratio": array.ratio, "psnr_data": h.psnr,
        # where the bytes go: preamble and header (the model section included), then the payloads
        "header_bytes": array.file_size - int(h.blocks["length"].sum()), "section_bytes": len(h.section),
        "blocks": len(h.blocks), "networks": len(networks),
        "parameters": sum(param_count(h.ndim, int(b["first_width"]), int(b["hidden_width"]), h.layers)
                          for b in networks),
        "network": {"layers": h.layers, "w0": h.w0, "w0_hidden": h.w0_hidden, "fr": h.fr},
        "partition": {"method": h.partition, "max_blocks": h.max_blocks, "top_m": h.top_m,
                      "tree_depth": h.tree_depth, "min_leaf_side": h.min_leaf_side},
        "allocation": h.allocation, "steps": h.steps, "seed": h.seed,
        "block_table": [
            {"node": int(b["node"]), "origin": list(map(int, o)), "size": list(map(int, s)),
             "kind": KIND_NAMES[int(b["kind"])], "first_width": int(b["first_width"]),
             "hidden_width": int(b["hidden_width"]), "lo": float(b["lo"]), "hi": float(b["hi"]),
             "bytes": int(b["length"])}
            for b, o, s in zip(h.blocks, array._decoder.origins, array._decoder.sizes)],
    }


def _info(args: argparse.Namespace, out: TextIO) -> int:
    info = describe(args.input)
    if args.json:
        print(json.dumps(info, indent=2), file=out)
        return EXIT_OK
    model = info["model"]
    kind = (f"{model['family']} model {model['model_id']}, {model['entropy']} entropy, "
            f"{model['upsampling']} upsampling"
            + (f", {model['residual']} residual" if model.get("residual", "none") != "none" else "")
            if "entropy" in model else f"{model['family']} model")
    print(f"{info['path']}: .sci v{info['format_version']} ({kind}), "
          f"{'x'.join(map(str, info['shape']))} "
          f"{info['dtype']}, spacing {info['spacing']}\n"
          f"  {info['bytes']} bytes | {info['bpv']:.4f} BPV | ratio {info['ratio']:.1f}:1 | "
          f"PSNR {_fmt(info['psnr_data'])} dB (data range)\n"
          f"  {info['blocks']} blocks ({info['networks']} networks, {info['parameters']} parameters),"
          f" {info['partition']['method']} partition, allocation {info['allocation']}, "
          f"{info['steps']} steps\n"
          f"  header {info['header_bytes']} bytes (model section {info['section_bytes']}), "
          f"payloads {info['bytes'] - info['header_bytes']} bytes", file=out)
    for b in info["block_table"]:
        net = (f"SIREN {b['first_width']}/{b['hidden_width']}" if b["kind"] == "siren"
               else f"{b['kind']} {b['lo']:g}")
        print(f"    node {b['node']:>5} at {b['origin']} size {b['size']}: {net}, {b['bytes']} bytes",
              file=out)
    return EXIT_OK


def _evaluate(args: argparse.Namespace, out: TextIO) -> int:
    from napari_sci.core.metrics import evaluate
    from napari_sci.core.volume_files import read_volume

    original, _ = read_volume(args.original)
    if str(args.reconstruction).endswith(".sci"):
        from napari_sci.core.lazy import open_sci

        reconstruction = open_sci(args.reconstruction)[...]
    else:
        reconstruction, _ = read_volume(args.reconstruction)
    if original.shape != reconstruction.shape:
        raise SciError(f"shapes differ: original {original.shape}, "
                       f"reconstruction {reconstruction.shape}")
    metrics = evaluate(original, reconstruction, args.thresholds).as_dict()
    if args.json:
        print(json.dumps(metrics, indent=2), file=out)
        return EXIT_OK
    acc = ", ".join(f"Acc({k}) {v:.4f}" for k, v in metrics["accuracy"].items())
    print(f"PSNR {_fmt(metrics['psnr_data'])} dB (data range), {_fmt(metrics['psnr_dtype'])} dB "
          f"(dtype range) | SSIM {_fmt(metrics['ssim'], 4)} | max abs error "
          f"{metrics['max_abs_error']:g} | {acc}", file=out)
    return EXIT_OK


def _bench(args: argparse.Namespace, out: TextIO) -> int:
    from napari_sci.bench.cli import run_bench

    return run_bench(args, out)


COMMANDS = {"compress": _compress, "decompress": _decompress, "info": _info, "evaluate": _evaluate,
            "bench": _bench}


# the compress options that set one model family's settings (config.other_family_settings knows which)
FAMILY_OPTIONS = {
    "--fr": "fr", "--layers": "layers", "--w0": "w0", "--allocation": "rule",
    "--samples": "samples_per_block", "--format": "format", "--bits-per-param": "bits_per_param",
    "--compile": "compile", "--levels": "levels",
    "--grid-hidden": "grid_hidden", "--max-tiles": "max_tiles", "--finest-level": "finest_level",
    "--fine-updates": "sparse_fine", "--entropy": "entropy", "--upsampling": "upsampling",
    "--residual": "residual", "--residual-grid-bpv": "residual_grid_bpv",
    "--residual-block": "residual_block", "--loop-filter": "loop_filter", "--no-loop-filter": "loop_filter",
    "--exact-tiles": "exact_tiles", "--no-exact-tiles": "exact_tiles", "--grid-samples": "grid_samples",
    "--grid-lr": "grid_lr"}


def _options_given(argv: Sequence[str], known: Sequence[str]) -> list[str]:
    """The options of ``known`` written on the command line (argparse's unique prefixes included)."""
    given = []
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        matches = [k for k in known if k == name] or [k for k in known if k.startswith(name)]
        if len(matches) == 1 and matches[0] not in given:
            given.append(matches[0])
    return given


def _check_family_options(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """An option of the other model family would be silently ignored: refuse it, naming it."""
    if args.command != "compress":
        return
    wrong = [option for option in _options_given(argv, list(FAMILY_OPTIONS))
             if other_family_settings(args.model, [FAMILY_OPTIONS[option]])]
    if wrong:
        other = "siren" if args.model == "grid" else "grid"
        default = " (the default, format 3)" if args.model == "grid" else ""
        raise SciConfigError(f"{', '.join(wrong)} set the {other} model, but the model is "
                             f"{args.model}{default}; use --model {other} for them")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    out = out or sys.stdout
    try:
        _check_family_options(args, argv)
        if args.threads is not None:
            _set_threads(args.threads)
        return COMMANDS[args.command](args, out)
    except SciError as error:
        return _fail(args.command, str(error))
    except BrokenPipeError:  # e.g. `napari-sci info x.sci | head`; an OSError, so caught first
        sys.stderr.close()
        return EXIT_OK
    except OSError as error:  # anything the library did not already turn into a SciError
        where = f" ({error.filename})" if error.filename else ""
        return _fail(args.command, f"{error.strerror or error}{where}")
    except MemoryError:
        return _fail(args.command, "out of memory; compress or decode a smaller region")
    except KeyboardInterrupt:
        print(f"napari-sci {args.command}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _set_threads(count: int) -> None:
    if count < 1:
        raise SciError(f"--threads must be at least 1, got {count}")
    import torch

    torch.set_num_threads(count)


def _fail(command: str, message: str) -> int:
    """One line on stderr, exit status 1: never a traceback for an error the user can act on."""
    line = " ".join(message.split())
    print(f"napari-sci {command}: error: {line}", file=sys.stderr)
    return EXIT_ERROR
