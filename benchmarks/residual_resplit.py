"""How a budget should split between latents and the residual layer, without refitting.

A finished latent-grid file (models 3 and 5, latents alone; or 9 and 10, with a residual) is decoded
tile by tile as a reader does; its residual layer is then coded again by the encoder's own code
(``core.grid_residual.code_residual``) at each larger total budget given, so the latents of one fit,
fitted at the file's rate r, can be measured under any total B > r. ``--no-latents`` codes the DCT
blocks over zeroed latents instead (every level's base 0: the synthesis's constant; the bytes they free
go to the residual). ``--loop-filter`` codes the residual beside loop filters as the encoder does
(models 13 and 14: the same call, ``core.loop_filter_fit.residual_with_filters``) and reports the
reader's deblocked PSNR before and after the filters (floats, no rounding). ``--rd-lambda`` sets the
rate–distortion quantisation (``none``: the dead zone alone). PSNR over the data range from the squared
error of the tiles (no deblocking, no rounding to the dtype: within 0.1 dB of the files' own on the
table's rows).

    python benchmarks/residual_resplit.py runs/mri_t1_colin27_grid_0.05.sci \
        ../shared/data/mri_t1_colin27.tif --bpv 0.1 0.25 --out benchmarks/results/grid/s28/resplit_mri.json

Session 28 (docs/benchmarks.md §7): the MRI's B-spline latents at 0.0375 BPV reached 35.22 dB at
0.1 BPV where latents at 0.075 reached 34.22, so B-spline latents now get at most 0.04 BPV.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from napari_sci.base.grid_geometry import levels_for
from napari_sci.base.volume import ValueRange
from napari_sci.core.decoder import VolumeDecoder
from napari_sci.core.grid_residual import BLOCK_CANDIDATES, RD_LAMBDA, code_residual, decoded_tiles
from napari_sci.core.loop_filter_fit import FilterTarget, filter_error, residual_with_filters
from napari_sci.core.volume_files import read_volume
from napari_sci.io import residual as residual_coding
from napari_sci.io.container import read_sci
from napari_sci.io.format import KIND_GRID, grid_section
from napari_sci.io.loop_filter import NONE, SHARED
from napari_sci.io.residual import SECTION_BYTES, WRITTEN_CODING, split_payload
from napari_sci.models import residual_blocks
from napari_sci.models.grid import decode_synthesis, synthesise


def _tiles(sci: str, original: str) -> dict:
    """The file's grid tiles: normalised targets, the synthesis output of their latents, level 1, and
    the bytes the file spends besides its residual streams."""
    contents = read_sci(sci)
    header = contents.header
    section = grid_section(header)
    decoder = VolumeDecoder(contents)
    volume, _ = read_volume(original)
    span = header.value_max - header.value_min
    normalised = (volume.astype(np.float32) - np.float32(header.value_min)) / np.float32(span or 1.0)
    latents, residual_bytes, targets, bare = [], 0, [], 0
    for index in np.flatnonzero(header.blocks["kind"] == KIND_GRID):
        payload = contents.payloads[index]
        latent, residual = split_payload(payload) if section.residual is not None else (payload, b"")
        latents.append(latent)
        residual_bytes += len(residual)
        bare += len(latent) - levels_for(tuple(int(s) for s in decoder.sizes[index]), section.layout.levels)
        box = tuple(slice(o, o + s) for o, s in zip(decoder.origins[index], decoder.sizes[index]))
        targets.append(normalised[box])
    decoded, level1 = decoded_tiles(latents, [t.shape for t in targets], section.layout,
                                    section.synthesis, section.latent_step, section.context)
    # a file without a residual would add the residual model and each tile's u32 latent length; one
    # with an older residual model, the difference to the one written now
    if section.residual is None:
        added = SECTION_BYTES[WRITTEN_CODING] + 4 * len(targets)
    else:
        added = SECTION_BYTES[WRITTEN_CODING] - SECTION_BYTES[section.residual.coding]
    return {"targets": targets, "decoded": decoded, "level1": level1, "voxels": volume.size,
            "fixed": contents.file_size - residual_bytes + added,
            "bare_saving": bare,  # latent bytes beyond each level's zero base: what zeroed latents free
            "file_bpv": 8 * contents.file_size / volume.size}


def _filter_target(sci: str, original: str, decoded: list, level1: list) -> FilterTarget:
    """What the encoder fits loop filters on, for this file's tiles."""
    contents = read_sci(sci)
    header = contents.header
    decoder = VolumeDecoder(contents)
    volume, _ = read_volume(original)
    span = header.value_max - header.value_min
    normalised = (volume.astype(np.float32) - np.float32(header.value_min)) / np.float32(span or 1.0)
    regions = [tuple(slice(int(o), int(o + s)) for o, s in zip(origin, size))
               for origin, size in zip(decoder.origins, decoder.sizes)]
    tiles = [int(i) for i in np.flatnonzero(header.blocks["kind"] == KIND_GRID)]
    return FilterTarget(normalised, ValueRange(header.value_min, header.value_max), regions, header.blocks,
                        tiles, decoded, level1)


def _constant(sci: str) -> float:
    """The synthesis output of all-zero latents (normalised value): what a tile of zero bases shows."""
    section = grid_section(read_sci(sci).header)
    weights = decode_synthesis(section.synthesis, section.layout)
    features = np.zeros((1, section.layout.levels), np.float32)
    return float(synthesise(features, weights, section.layout)[0])


def _psnr(tiles: dict, decoded: list[np.ndarray], level1: list, model, streams: list[bytes]) -> float:
    error = 0.0
    for target, base, l1, stream in zip(tiles["targets"], decoded, level1, streams):
        layout = residual_coding.tile_layout(target.shape, l1, model.block)
        q = (residual_coding.decode(stream, layout, model) if stream
             else np.zeros(layout.classes.size, np.int32))
        error += float(((np.asarray(target, np.float64) - base
                         - residual_blocks.reconstruct(layout, q, model.step)) ** 2).sum())
    return -10 * math.log10(max(error, 1e-30) / tiles["voxels"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sci")
    parser.add_argument("original")
    parser.add_argument("--bpv", type=float, nargs="+", required=True, help="total budgets to measure")
    parser.add_argument("--rd-lambda", default=str(RD_LAMBDA), help="λ of rd_quantise, or none")
    parser.add_argument("--no-latents", action="store_true", help="the DCT blocks over a zero base")
    parser.add_argument("--block", nargs="+", default=None, metavar="ZxYxX",
                        help="the block shapes to choose from (default: the encoder's candidates)")
    parser.add_argument("--loop-filter", action="store_true",
                        help="code the residual beside loop filters (models 13 and 14), as the encoder does")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rd = None if args.rd_lambda == "none" else float(args.rd_lambda)
    tiles = _tiles(args.sci, args.original)
    blocks = (BLOCK_CANDIDATES if args.block is None
              else [tuple(int(v) for v in b.lower().split("x")) for b in args.block])
    decoded, level1, fixed = tiles["decoded"], tiles["level1"], tiles["fixed"]
    if args.no_latents:  # every level's base 0: the synthesis of zero latents, a constant per tile
        decoded = [np.full(t.shape, _constant(args.sci)) for t in tiles["targets"]]
        level1, fixed = [None] * len(decoded), fixed - tiles["bare_saving"]
    rows = []
    for bpv in args.bpv:
        room = int(bpv * tiles["voxels"] / 8) - fixed
        def code(room: int, shapes) -> tuple:
            return code_residual(tiles["targets"], decoded, level1, room, rd_lambda=rd, blocks=shapes)[:2]

        row: dict = {"total_bpv": bpv, "room": room}
        if args.loop_filter:  # the shared radius and each tile's choice byte, then what they hold
            reader = _filter_target(args.sci, args.original, decoded, level1)
            model, streams, choice = residual_with_filters(code, room - 1 - len(tiles["targets"]), blocks,
                                                           reader, int(bpv * tiles["voxels"] / 8))
            systems = reader.systems(model, streams)
            shared = choice.shared
            after = reader.error + sum(
                filter_error(s, shared if c == SHARED else (c if c != NONE else None)) - filter_error(s, None)
                for s, c in zip(systems, choice.tiles))
            row.update(filter_bytes=1 + len(choice.tiles) + choice.extra_bytes,
                       psnr_deblocked=-10 * math.log10(reader.error / tiles["voxels"]),
                       psnr_filtered=-10 * math.log10(after / tiles["voxels"]),
                       shared_radius=shared.radius if shared else 0,
                       choices=[c if isinstance(c, int) else c.radius for c in choice.tiles])
        else:
            model, streams = code(room, blocks)
            reader = _filter_target(args.sci, args.original, decoded, level1)
            reader.systems(model, streams)
            row.update(psnr_deblocked=-10 * math.log10(reader.error / tiles["voxels"]))
        row.update(residual_bytes=sum(map(len, streams)), step=model.step, block=list(model.block),
                   psnr_data=_psnr(tiles, decoded, level1, model, streams))
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"sci": args.sci, "original": args.original, "file_bpv": tiles["file_bpv"],
              "latents": not args.no_latents, "rd_lambda": rd, "blocks": [list(b) for b in blocks],
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
