"""The store's grid, seeds, levels and path checks: pure functions, no fitting."""

from __future__ import annotations

import pytest

from napari_sci.base.config import StoreConfig
from napari_sci.errors import SciConfigError, SciFormatError, SciPathError
from napari_sci.store.layout import (
    ChunkGrid,
    check_store_output,
    chunk_path,
    chunk_seed,
    chunk_written,
    is_store_path,
    level_shapes,
    read_attributes,
    write_chunk,
)


def test_the_grid_covers_the_volume_with_clipped_edge_chunks():
    grid = ChunkGrid.cubic((70, 32, 5), 32)
    assert grid.chunks == (32, 32, 5)
    assert grid.counts == (3, 1, 1)
    boxes = [grid.box(i) for i in grid.indices()]
    assert boxes == [((0, 32), (0, 32), (0, 5)), ((32, 64), (0, 32), (0, 5)), ((64, 70), (0, 32), (0, 5))]


def test_seeds_differ_per_chunk_and_follow_c_order():
    grid = ChunkGrid.cubic((64, 64, 64), 32)
    seeds = [chunk_seed(5, grid, i) for i in grid.indices()]
    assert seeds == list(range(5, 13))
    assert chunk_seed(2**32 - 1, grid, (0, 0, 1)) == 0


def test_levels_halve_until_the_largest_axis_is_small():
    assert level_shapes((64, 48, 40)) == [(64, 48, 40), (32, 24, 20)]
    assert level_shapes((62, 10, 10)) == [(62, 10, 10)]  # 31 < 32: no level 1
    assert len(level_shapes((100_000, 10, 10))) == 8


def test_store_config_validates_and_counts_workers():
    assert StoreConfig().worker_count(2) == 1
    assert StoreConfig().worker_count(1) == 1
    assert StoreConfig(workers=3).worker_count(2) == 3
    with pytest.raises(SciConfigError, match="not both"):
        StoreConfig(workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(SciConfigError, match="chunks"):
        StoreConfig(chunks=4)


def test_output_checks_name_the_problem(tmp_path):
    source = tmp_path / "in.zarr"
    source.mkdir()
    with pytest.raises(SciPathError, match=r"\*\.sci\.zarr"):
        check_store_output(tmp_path / "out.zarr", source)
    with pytest.raises(SciPathError, match="into the input"):
        check_store_output(source / "x.sci.zarr", source)
    with pytest.raises(SciPathError, match="does not exist"):
        check_store_output(tmp_path / "missing" / "x.sci.zarr", source)
    assert is_store_path(tmp_path / "A.SCI.ZARR/")


def test_a_chunk_counts_as_written_only_when_it_parses(tmp_path, sci_bytes):
    store = tmp_path / "s.sci.zarr"
    assert not chunk_written(store, (0, 0, 0))
    write_chunk(store, (0, 0, 0), sci_bytes[:-1])  # truncated: refused
    assert not chunk_written(store, (0, 0, 0))
    write_chunk(store, (0, 0, 0), sci_bytes)
    assert chunk_written(store, (0, 0, 0))
    assert chunk_path(store, (0, 0, 0)) == store / "0" / "c" / "0" / "0" / "0"
    assert not list(store.rglob("*.tmp"))
    damaged = bytearray(sci_bytes)
    damaged[-1] ^= 0xFF
    write_chunk(store, (0, 0, 0), bytes(damaged))
    assert not chunk_written(store, (0, 0, 0))


def test_a_folder_without_napari_sci_attributes_is_no_store(tmp_path):
    with pytest.raises(SciFormatError, match=r"no zarr\.json"):
        read_attributes(tmp_path)
    (tmp_path / "zarr.json").write_text('{"attributes": {}}')
    with pytest.raises(SciFormatError, match="not a napari-sci one"):
        read_attributes(tmp_path)


@pytest.fixture(scope="module")
def sci_bytes() -> bytes:
    import numpy as np

    import napari_sci

    volume = (np.arange(16 * 16 * 16, dtype=np.uint16).reshape(16, 16, 16) % 97) * 3
    return napari_sci.compress(volume, bpv=2.0, steps=2, device="cpu").data
