"""Long fuzz run of the ``.sci`` reader: coverage-guided with atheris, else random mutation.

Every input is a ``.sci`` candidate. Its first byte is a switch: when odd, every CRC of the rest is
recomputed before parsing (``tests/robustness/mutations.py``), so mutations reach the field checks,
the block-tree tiling check and the decoder instead of stopping at a checksum. The property is the
CI test's: ``parse`` raises a ``SciFormatError`` (or subclass) or returns contents that decode to the
header's shape and dtype, inside its value range, without warnings. Anything else is a crash; so is
a hang (libFuzzer ``-timeout``) or a huge allocation (``-rss_limit_mb``).

    nice -n 19 .venv/bin/python fuzz/fuzz_reader.py --seconds 660 --stats out/fuzz-stats.json

Needs ``pip install atheris`` for the coverage-guided mode (``--mode random`` works without it).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "robustness"))
GOLDENS = sorted((REPO / "tests" / "data").glob("golden_v*.sci"))
SAMPLE = REPO / "src" / "napari_sci" / "data" / "mri_t1_colin27_crop.tif"


class Stats:
    """Counts written to a JSON file every few seconds (libFuzzer exits without Python's atexit)."""

    def __init__(self, path: Path | None, mode: str) -> None:
        self.path, self.mode = path, mode
        self.counts = {"inputs": 0, "accepted": 0, "refused": 0, "crashes": 0}
        self.started = time.time()
        self._last = 0.0

    def add(self, key: str) -> None:
        self.counts["inputs"] += key != "crashes"
        self.counts[key] += 1
        if time.time() - self._last > 5:
            self.flush()

    def flush(self) -> None:
        self._last = time.time()
        if self.path is not None:
            record = {**self.counts, "seconds": round(self._last - self.started, 1),
                      "mode": self.mode}
            self.path.write_text(json.dumps(record, indent=2) + "\n")


def seeds() -> list[bytes]:
    """The committed golden files (one per format version and version 3 model) and small fresh files
    with SIREN and constant blocks (formats 1 and 2) and latent-grid tiles (format 3, model 3: the
    grid family's default, context-coded latents)."""
    import numpy as np
    import tifffile

    from napari_sci.base.config import compress_config
    from napari_sci.core.codec import encode

    volume = np.ascontiguousarray(tifffile.imread(SAMPLE)[20:36, 40:56, 40:56]).copy()
    volume[8:] = 0
    small = [encode(volume, compress_config(
        bpv=5.0, steps=20, max_depth=1, min_leaf_side=4, method="equal", max_blocks=8, layers=4,
        min_hidden=2, useful_hidden=2, seed=1, device="cpu", format=version, model="siren")).data
        for version in (1, 2)]
    tiles = np.ascontiguousarray(tifffile.imread(SAMPLE)[:16, :64, :64])  # two 32k-voxel tiles
    small.append(encode(tiles, compress_config(bpv=0.5, steps=10, seed=1, device="cpu", model="grid",
                                               method="equal", max_depth=1)).data)
    return [path.read_bytes() for path in GOLDENS] + small


def make_target(stats: Stats):
    from mutations import check_accepted, parse_or_refuse, refresh_checksums

    def one_input(data: bytes) -> None:
        if not data:
            return
        candidate = refresh_checksums(data[1:]) if data[0] & 1 else data[1:]
        try:
            contents = parse_or_refuse(candidate)
            if contents is not None:
                check_accepted(contents)
        except BaseException:
            stats.add("crashes")
            stats.flush()
            raise
        stats.add("refused" if contents is None else "accepted")

    return one_input


def run_atheris(seconds: int, stats: Stats, workdir: Path, extra: list[str]) -> None:
    import atheris

    # the reader's modules must be first imported inside this block to be instrumented: with an empty
    # block libFuzzer saw no coverage and shrank the seed corpus to one byte (found 2026-11-27)
    with atheris.instrument_imports(include=["napari_sci"]):
        import napari_sci.core.decoder
        import napari_sci.core.lazy
        import napari_sci.io.container
        import napari_sci.io.exact_tiles
        import napari_sci.io.format
        import napari_sci.io.latent_context
        import napari_sci.io.latents
        import napari_sci.io.weights
        import napari_sci.models.grid  # noqa: F401
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        for flag in (0, 1):
            (corpus / f"seed{i}-{flag}").write_bytes(bytes([flag]) + seed)
    argv = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-timeout=20",
            "-rss_limit_mb=4096", "-max_len=16384", "-print_final_stats=1",
            f"-artifact_prefix={workdir}/", *extra]
    atheris.Setup(argv, make_target(stats))
    atheris.Fuzz()


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(max(1, len(buf)))
        op = rng.choice(("bit", "byte", "u32", "truncate", "insert", "delete", "splice"))
        if op == "bit" and buf:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == "byte" and buf:
            buf[at] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == "u32" and len(buf) >= 4:
            at = min(at, len(buf) - 4)
            buf[at: at + 4] = rng.choice((0, 1, 255, 65535, 2**31, 2**32 - 1)).to_bytes(4, "little")
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == "delete":
            del buf[at: at + rng.randint(1, 64)]
        elif op == "splice":
            buf[at:] = other[rng.randrange(len(other) + 1):]
    return bytes(buf)


def run_random(seconds: int, stats: Stats, seed: int) -> None:
    target = make_target(stats)
    rng = random.Random(seed)
    pool = seeds()
    deadline = time.time() + seconds
    while time.time() < deadline:
        base, other = rng.sample(pool, 2)
        target(bytes([rng.randrange(2)]) + mutate(rng, base, other))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="time budget (default 600)")
    parser.add_argument("--mode", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--stats", type=Path, default=None, help="write counts here as JSON")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="corpus and crash files (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="random mode's seed")
    args, extra = parser.parse_known_args(argv)
    mode = args.mode
    if mode == "auto":
        try:
            import atheris  # noqa: F401

            mode = "atheris"
        except ImportError:
            mode = "random"
    stats = Stats(args.stats, mode)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sci-fuzz-"))
    if mode == "atheris":
        run_atheris(args.seconds, stats, workdir, extra)
    else:
        run_random(args.seconds, stats, args.seed)
    stats.flush()
    print(json.dumps({**stats.counts, "seconds": round(time.time() - stats.started, 1),
                      "mode": mode}))
    return 1 if stats.counts["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
