"""Format 3's loop filter (models 13 and 14): offsets, records, choices and the filter itself, each
against the spec's sentences (docs/format.md "Models 13 and 14")."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from napari_sci.errors import SciFormatError
from napari_sci.io import loop_filter as L

DATA = Path(__file__).resolve().parents[1] / "data"
FILTERED = ("golden_v3_context_residual_filtered.sci", "golden_v3_context_bspline_residual_filtered.sci")


@pytest.mark.parametrize(("radius", "pairs"), [(1, 3), (2, 12), (3, 31)])
def test_pair_offsets_follow_the_spec_sentence(radius, pairs):
    offsets = [tuple(int(v) for v in d) for d in L.pair_offsets(radius)]
    assert len(offsets) == pairs
    diamond = [d for d in itertools.product(range(-radius, radius + 1), repeat=3)
               if 1 <= sum(map(abs, d)) <= radius]
    # one of each opposite pair, the one whose first non-zero component is positive, in C order
    assert offsets == [d for d in diamond if next(v for v in d if v) > 0]
    assert sorted(offsets + [tuple(-v for v in d) for d in offsets]) == sorted(diamond)
    assert L.record_values(radius) == pairs + 2


def _spec_filter(x, loop_filter, low, span, voxels):
    """The spec's sentence voxel by voxel: every offset of the diamond, neighbours clamped."""
    c = loop_filter.taps
    out = []
    for v in voxels:
        def u(w):
            w = tuple(min(max(a, 0), s - 1) for a, s in zip(w, x.shape))
            return (float(x[w]) - low) / span
        total = c[0] * u(v)
        for tap, d in zip(c[1:], L.pair_offsets(loop_filter.radius)):
            total += tap * (u(tuple(a + b for a, b in zip(v, d))) + u(tuple(a - b for a, b in zip(v, d))))
        out.append(low + span * (total + loop_filter.offset))
    return np.array(out)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_the_filter_computes_the_spec_sentence_with_clamped_neighbours(radius):
    rng = np.random.default_rng(radius)
    x = rng.uniform(10, 200, (7, 9, 6)).astype(np.float32)
    values = tuple(int(v) for v in rng.integers(-3000, 9000, L.record_values(radius)))
    loop_filter = L.LoopFilter(radius, values)
    low, span = 10.0, 190.0
    padded = np.pad(x, radius, mode="edge")
    region = (slice(0, 7), slice(2, 9), slice(0, 4))  # touches the border on five sides
    got = L.filter_region(padded, radius, region, loop_filter, low, span)
    voxels = list(itertools.product(range(0, 7), range(2, 9), range(0, 4)))
    expected = _spec_filter(x, loop_filter, low, span, voxels).reshape(got.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_the_identity_filter_changes_nothing():
    x = np.random.default_rng(0).uniform(0, 1, (5, 6, 7)).astype(np.float32)
    identity = L.LoopFilter(1, (int(L.TAP_SCALE), 0, 0, 0, 0))
    got = L.filter_region(np.pad(x, 2, mode="edge"), 2, (slice(0, 5), slice(0, 6), slice(0, 7)), identity,
                          0.0, 1.0)
    np.testing.assert_allclose(got, x, atol=1e-6)


def test_records_round_trip_and_weights_are_stored_as_the_spec_scales():
    loop_filter = L.LoopFilter.from_weights(2, np.r_[0.75, np.full(12, 0.02)], -0.001)
    assert loop_filter.values[0] == round(0.75 * 2 ** 13)
    assert loop_filter.values[-1] == round(-0.001 * 2 ** 16)
    assert L.LoopFilter.unpack(loop_filter.pack(), 2) == loop_filter
    assert len(loop_filter.pack()) == 2 * 14
    clipped = L.LoopFilter.from_weights(1, np.r_[9.0, 0, 0, 0], 0.0)  # beyond an i16: the nearest stored
    assert clipped.values[0] == 32767


def test_a_tile_choice_reads_none_shared_or_its_own_and_refuses_the_rest():
    shared = L.LoopFilter(3, tuple(range(L.record_values(3))))
    own = L.LoopFilter(1, (8000, 50, 60, 70, -5))
    stream = b"\x01\x02\x03\x04"
    assert L.split_choice(L.pack_choice(L.NONE) + stream, shared) == (None, stream)
    assert L.split_choice(L.pack_choice(L.SHARED) + stream, shared) == (shared, stream)
    assert L.split_choice(L.pack_choice(own) + stream, shared) == (own, stream)
    assert L.choice_bytes(own) == 1 + 10
    assert L.choice_bytes(L.SHARED) == 1
    with pytest.raises(SciFormatError, match="shared loop filter but the file has none"):
        L.split_choice(b"\xff" + stream, None)
    for bad in (4, 17, 254):
        with pytest.raises(SciFormatError, match="loop filter choice"):
            L.split_choice(bytes([bad]) + stream, shared)
    with pytest.raises(SciFormatError, match="record"):
        L.split_choice(L.pack_choice(own)[:-1], shared)
    with pytest.raises(SciFormatError, match="before its loop filter"):
        L.split_choice(b"", shared)


def test_the_shared_filter_field():
    shared = L.LoopFilter(2, tuple(range(14)))
    assert L.unpack_shared(L.pack_shared(shared) + b"rest") == (shared, 29)
    assert L.unpack_shared(L.pack_shared(None) + b"rest") == (None, 1)
    with pytest.raises(SciFormatError, match="outside 0–3"):
        L.unpack_shared(b"\x04" + bytes(200))
    with pytest.raises(SciFormatError):
        L.unpack_shared(b"\x03" + bytes(10))


@pytest.mark.parametrize("name", FILTERED)
def test_a_filtered_file_decodes_any_box_as_the_whole_volume_does(name):
    from napari_sci.core.decoder import VolumeDecoder
    from napari_sci.io.container import parse

    decoder = VolumeDecoder(parse((DATA / name).read_bytes()))
    shape = decoder.header.shape
    whole = decoder.decode(tuple((0, s) for s in shape))
    faces = sorted({int(o[0]) for o in decoder.origins} | {0, shape[0] - 1})
    for z in faces + [int(o[0]) - 1 for o in decoder.origins if o[0] > 0]:
        plane = decoder.decode(((z, z + 1), (0, shape[1]), (0, shape[2])))
        np.testing.assert_array_equal(plane[0], whole[z])
    box = ((3, 21), (60, 70), (0, 5))
    np.testing.assert_array_equal(decoder.decode(box), whole[3:21, 60:70, 0:5])


@pytest.mark.parametrize("name", FILTERED)
def test_the_filter_is_applied_and_leaves_raw_reads_alone(name):
    """The filter changes the deblocked values of filtered tiles only; a read without deblocking
    gets the raw tiles (docs/format.md)."""
    from napari_sci.core.decoder import VolumeDecoder
    from napari_sci.io.container import parse

    decoder = VolumeDecoder(parse((DATA / name).read_bytes()))
    box = tuple((0, s) for s in decoder.header.shape)
    filtered = decoder.decode_box(box)
    unfiltered = decoder._deblocked(box)
    raw = decoder.decode_box(box, deblocking=False)
    np.testing.assert_array_equal(raw, decoder.raw_box(box)[0])
    for index in range(len(decoder.header.blocks)):
        origin, size = decoder.origins[index], decoder.sizes[index]
        region = tuple(slice(int(o), int(o + s)) for o, s in zip(origin, size))
        changed = not np.array_equal(filtered[region], unfiltered[region])
        assert changed == (decoder.models.loop_filter(index) is not None)


def test_a_tile_asking_for_a_missing_shared_filter_is_refused():
    """The golden model 13 file with its section's shared filter removed: its tiles that ask for it
    make the file corrupt, refused when read."""
    from dataclasses import replace

    from napari_sci.io.container import parse, serialise
    from napari_sci.io.format import grid_section

    contents = parse((DATA / FILTERED[0]).read_bytes())
    section = grid_section(contents.header)
    assert section.shared_filter is not None
    header = replace(contents.header, section=replace(section, shared_filter=None).pack())
    with pytest.raises(SciFormatError, match="shared loop filter"):
        parse(serialise(header, contents.payloads))


def test_scrolling_reuses_kept_planes_and_stays_exact(monkeypatch):
    """A viewer's next plane reuses the deblocked planes its filter window shares with the last one;
    what is read equals the whole volume's, and the kept planes stay within their byte bound."""
    from napari_sci.core import decoder as D
    from napari_sci.io.container import parse

    decoder = D.VolumeDecoder(parse((DATA / FILTERED[0]).read_bytes()))
    shape = decoder.header.shape
    whole = decoder.decode(tuple((0, s) for s in shape))
    plane_bytes = 4 * shape[1] * shape[2]
    monkeypatch.setattr(D, "PLANE_CACHE_BYTES", 9 * plane_bytes)
    calls = []
    deblocked = decoder._deblocked
    monkeypatch.setattr(decoder, "_deblocked", lambda box: calls.append(box) or deblocked(box))
    for step, z in enumerate((10, 11, 12, 30, 11, 0, shape[0] - 1)):
        calls.clear()
        plane = decoder.decode(((z, z + 1), (0, shape[1]), (0, shape[2])))
        np.testing.assert_array_equal(plane[0], whole[z])
        if step in (1, 2):  # scrolling on: one new plane decoded (radius 3 here), the rest kept
            assert [c[0] for c in calls] == [(z + 3, z + 4)]
        assert decoder._planes_bytes <= 9 * plane_bytes
