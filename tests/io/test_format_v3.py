"""Format version 3 (docs/format.md, "Version 3"): the model id and section, and the latent-grid model."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from napari_sci.base.grid_geometry import GridLayout
from napari_sci.errors import SciFormatError, SciVersionError
from napari_sci.io.format import (
    BLOCK_RECORD,
    KIND_CONSTANT,
    KIND_GRID,
    MODEL_GRID,
    SciHeader,
    header_length,
    pack_header,
    pack_preamble,
    unpack_header,
)
from napari_sci.io.latents import GridSection, unpack_grid_section

LAYOUT = GridLayout(levels=5, hidden=8, layers=3)


def _synthesis(n_words: int = 3) -> bytes:
    return bytes(2 * len(LAYOUT.tensor_sizes())) + bytes(4 * n_words)


def make_v3(**changes) -> SciHeader:
    blocks = np.zeros(2, dtype=BLOCK_RECORD)
    blocks[0] = (1, KIND_GRID, 0, 0, 0.0, 10.0, 9, 0)
    blocks[1] = (2, KIND_CONSTANT, 0, 0, 5.0, 5.0, 0, 0)
    fields = dict(shape=(8, 4, 4), dtype=np.dtype("uint16"), spacing=(2.0, 0.5, 0.5), value_min=0.0,
                  value_max=10.0, tree_depth=1, min_leaf_side=2, layers=3, w0=1.0, w0_hidden=1.0,
                  fr=1.0, partition="adaptive", allocation="equal", max_blocks=50, top_m=1,
                  steps=100, seed=3, psnr=31.5, blocks=blocks, version=3, model=MODEL_GRID,
                  section=GridSection(LAYOUT, 0.002, _synthesis()).pack())
    fields.update(changes)
    return SciHeader(**fields)


def crc_of(data: bytes) -> int:
    return struct.unpack("<I", pack_preamble(data)[16:20])[0]


def test_v3_header_round_trip_and_size():
    header = make_v3()
    data = pack_header(header)
    assert len(data) == header_length(3, 2, len(header.section)) == 80 + 5 + len(header.section) + 50
    back = unpack_header(data, 3, crc_of(data))
    assert (back.version, back.model, back.section) == (3, MODEL_GRID, header.section)
    np.testing.assert_array_equal(back.blocks, header.blocks)
    section = unpack_grid_section(back.section)
    assert section.layout == LAYOUT
    assert section.lam == pytest.approx(0.002)


def test_unknown_model_id_is_a_version_error():
    data = bytearray(pack_header(make_v3()))
    data[80] = 15  # the model id follows n_blocks
    with pytest.raises(SciVersionError, match="model family id 15"):
        unpack_header(bytes(data), 3, crc_of(bytes(data)))


@pytest.mark.parametrize(("section", "word"), [
    (b"\x05\x08", "too short"),
    (struct.pack("<BBBff", 0, 8, 3, 0.0, 1.0) + _synthesis(), "out of range"),
    (struct.pack("<BBBff", 5, 8, 9, 0.0, 1.0) + _synthesis(), "out of range"),
    (struct.pack("<BBBff", 5, 8, 3, float("nan"), 1.0) + _synthesis(), "lambda"),
    (struct.pack("<BBBff", 5, 8, 3, 0.0, 1.0) + _synthesis()[:-2], "does not fit"),
    (struct.pack("<BBBff", 5, 8, 3, 0.0, 1.0) + _synthesis(2000), "does not fit"),
])
def test_bad_grid_sections_are_refused(section, word):
    data = pack_header(make_v3(section=section))
    with pytest.raises(SciFormatError, match=word):
        unpack_header(data, 3, crc_of(data))


@pytest.mark.parametrize(("changes", "word"), [
    ({"layers": 4}, "differ from the synthesis"),
    ({"version": 2}, "block kind"),  # packed as v2: no section, and kind 3 means nothing there
])
def test_inconsistent_v3_fields_are_refused(changes, word):
    header = make_v3(**changes)
    data = pack_header(header)
    with pytest.raises(SciFormatError, match=word):
        unpack_header(data, header.version, crc_of(data))


def test_a_tile_record_with_network_widths_is_refused():
    header = make_v3()
    header.blocks[0]["hidden_width"] = 4
    data = pack_header(header)
    with pytest.raises(SciFormatError, match="network widths"):
        unpack_header(data, 3, crc_of(data))


def test_a_siren_block_in_a_grid_file_is_refused():
    header = make_v3()
    header.blocks[0]["kind"] = 1
    data = pack_header(header)
    with pytest.raises(SciFormatError, match="block kind"):
        unpack_header(data, 3, crc_of(data))


@pytest.mark.parametrize("step", [0.0, float("inf"), 1000.0])
def test_bad_latent_steps_are_refused(step):
    section = struct.pack("<BBBff", 5, 8, 3, 0.0, step) + _synthesis()
    data = pack_header(make_v3(section=section))
    with pytest.raises(SciFormatError, match="latent step"):
        unpack_header(data, 3, crc_of(data))


def test_a_model_section_longer_than_the_header_is_refused():
    """Fuzz find: a section length reaching past the header (with no blocks) raised a numpy error."""
    header = make_v3(blocks=np.zeros(0, dtype=BLOCK_RECORD))
    data = bytearray(pack_header(header))
    struct.pack_into("<I", data, 81, 10_000)
    with pytest.raises(SciFormatError, match="model section"):
        unpack_header(bytes(data), 3, crc_of(bytes(data)))
