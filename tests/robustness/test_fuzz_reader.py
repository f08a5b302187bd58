"""A bounded property-based fuzz of the ``.sci`` reader (a few seconds; ``fuzz/`` runs the long one).

Property: for any mutated, truncated, extended or spliced file, ``parse`` either raises a
``SciFormatError`` (or subclass) or returns contents whose decode has the header's shape and dtype,
within its value range, without warnings. Half the inputs get every CRC recomputed after mutating,
so the checks behind the CRCs are exercised too.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mutations import INTERESTING_U32, check_accepted, parse_or_refuse, refresh_checksums

DATA = Path(__file__).resolve().parents[1] / "data"


def _mutate(data: bytes, draw: st.DrawFn, other: bytes) -> bytes:
    buf = bytearray(data)
    kind = draw(st.sampled_from(["bit", "byte", "u32", "truncate", "insert", "splice", "delete"]))
    at = draw(st.integers(0, max(0, len(buf) - 1)))
    if kind == "bit" and buf:
        buf[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "byte" and buf:
        buf[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
    elif kind == "u32" and len(buf) >= 4:
        at = min(at, len(buf) - 4)
        struct.pack_into("<I", buf, at, draw(st.sampled_from(INTERESTING_U32)))
    elif kind == "truncate":
        del buf[at:]
    elif kind == "insert":
        buf[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "delete":
        del buf[at: at + draw(st.integers(1, 64))]
    elif kind == "splice":
        cut = draw(st.integers(0, len(other)))
        buf[at:] = other[cut:]
    return bytes(buf)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_files_are_refused_or_decode_to_the_header(small_sci, data):
    version = struct.unpack_from("<H", small_sci, 8)[0]
    golden = (DATA / f"golden_v{version}.sci").read_bytes()
    base, other = data.draw(st.sampled_from([(small_sci, golden), (golden, small_sci)]))
    mutated = base
    for _ in range(data.draw(st.integers(1, 4))):
        mutated = _mutate(mutated, data.draw, other)
    if data.draw(st.booleans()):
        mutated = refresh_checksums(mutated)
    contents = parse_or_refuse(mutated)
    event("refused" if contents is None else "accepted")
    if contents is not None:
        check_accepted(contents)


def test_refreshing_checksums_keeps_a_valid_file_valid(small_sci):
    assert refresh_checksums(small_sci) == small_sci
