"""Fingerprints of what files decode to, to show a decoder change is bit-identical.

For each ``.sci`` file: the SHA-1 of the whole decoded volume (a middle plane read alone must equal
the same plane of the whole volume), and for residual files each tile's decoded coefficients and
whether re-encoding them gives the file's own stream. Run it with the old and the new code on the
same files and compare the two JSON files:

    PYTHONPATH=/path/to/old/src python benchmarks/decode_fingerprint.py FILES… --out old.json
    python benchmarks/decode_fingerprint.py FILES… --out new.json && cmp old.json new.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

import napari_sci
from napari_sci.io import residual as residual_coding


def _sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def fingerprint(path: str) -> dict:
    array = napari_sci.open_sci(path)
    whole = array[...]
    middle = array.shape[0] // 2
    if not np.array_equal(napari_sci.open_sci(path)[middle], whole[middle]):
        raise SystemExit(f"{path}: plane {middle} read alone differs from the whole volume's")
    record: dict = {"volume": _sha(whole.tobytes())}
    tiles = array._decoder.models
    model = getattr(tiles, "residual", None)
    if model is not None:
        rows = []
        for index, payload in enumerate(tiles.payloads):
            if tiles.exact[index]:
                continue
            layout, q = tiles.residual_coefficients(index)
            stream = residual_coding.split_payload(payload)[1]
            rows.append([_sha(q.tobytes()), residual_coding.encode(layout, q, model) == stream])
        record["residual_tiles"] = rows
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    record = {f: fingerprint(f) for f in args.files}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    streams = [ok for r in record.values() for _, ok in r.get("residual_tiles", [])]
    print(f"{len(record)} files, {len(streams)} residual tiles, all re-encode: {all(streams)}")


if __name__ == "__main__":
    main()
