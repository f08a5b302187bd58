"""Multiscale reading: level k evaluates the networks at every 2^k-th voxel only, and is fast warm."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sci
from napari_sci.models.siren import SirenBlocks
from napari_sci.store.multiscale import SciStoreLevel, open_store


def _undeblocked(store_path, shape, chunk=32) -> np.ndarray:
    """The whole volume assembled from each chunk's file decoded without deblocking."""
    from napari_sci.core.decoder import VolumeDecoder, full_box
    from napari_sci.io.container import parse
    from napari_sci.store.layout import ChunkGrid, chunk_path

    grid = ChunkGrid.cubic(shape, chunk)
    out = np.empty(shape, dtype=np.uint16)
    for index in grid.indices():
        contents = parse(chunk_path(store_path, index).read_bytes())
        decoder = VolumeDecoder(contents)
        with np.errstate(all="ignore"):
            out[grid.slices(index)] = decoder.decode(full_box(contents.header.shape), deblocking=False)
    return out


def test_open_sci_gives_level_zero_with_the_pyramid(reference_store, ct_volume):
    level0 = napari_sci.open_sci(reference_store)
    assert isinstance(level0, SciStoreLevel)
    assert [lv.shape for lv in level0.levels] == [(64, 48, 40), (32, 24, 20)]
    assert level0.levels[0] is level0
    assert level0.levels[1].spacing == (2.0, 2.0, 2.0)
    assert level0[5].shape == (48, 40)
    assert level0[5, ::-1, 3].shape == (48,)
    assert np.array_equal(level0[5, ::-1, 3], level0[5, :, 3][::-1])


def test_a_coarser_level_samples_the_networks_at_coarser_coordinates(reference_store, ct_volume):
    level1 = open_store(reference_store).levels[1]
    expected = _undeblocked(reference_store, ct_volume.shape)[::2, ::2, ::2]
    got = level1[...]
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= 1  # the same networks at the same coordinates
    assert np.array_equal(level1[7], got[7])
    assert np.array_equal(level1[3:9, 5, ::3], got[3:9, 5, ::3])


def _count_point_evaluations(monkeypatch, family) -> list[int]:
    """Voxels each ``family.evaluate_at`` call evaluates; a full-resolution box decode fails."""
    evaluated: list[int] = []
    original_at = family.evaluate_at

    def counting_at(self, index, picks):
        evaluated.append(int(np.prod([len(p) for p in picks])))
        return original_at(self, index, picks)

    def no_box(self, index, local):
        raise AssertionError("a coarse level decoded a full-resolution box")

    monkeypatch.setattr(family, "evaluate_at", counting_at)
    monkeypatch.setattr(family, "evaluate", no_box)
    return evaluated


def test_a_coarser_level_evaluates_only_its_own_voxels(reference_store, monkeypatch):
    evaluated = _count_point_evaluations(monkeypatch, SirenBlocks)
    level1 = open_store(reference_store).levels[1]
    level1[...]
    assert 0 < sum(evaluated) <= 32 * 24 * 20


def test_point_evaluation_equals_box_evaluation(reference_store):
    from napari_sci.core.decoder import VolumeDecoder
    from napari_sci.io.container import parse
    from napari_sci.store.layout import chunk_path

    contents = parse(chunk_path(reference_store, (0, 0, 0)).read_bytes())
    decoder = VolumeDecoder(contents)
    models = decoder.models
    index = next(i for i, b in enumerate(contents.header.blocks) if b["kind"] == 1)
    size = decoder.sizes[index]
    box = tuple((0, int(s)) for s in size)
    picks = [np.arange(int(s)) for s in size]
    assert np.array_equal(models.evaluate_at(index, picks), models.evaluate(index, box))


@pytest.mark.parametrize("level", [0, 1])
def test_a_warm_slice_at_any_level_reuses_the_parsed_chunks(reference_store, level, monkeypatch):
    """What makes a warm slice fast: chunks are parsed and their networks built once. (The latency
    itself is measured in benchmarks/store_slice_latency.py, not asserted here.)"""
    from napari_sci.store import multiscale

    array = open_store(reference_store).levels[level]
    middle = array.shape[0] // 2
    first = array[middle]  # cold: parses the chunks and builds their networks
    parsed = []
    original = multiscale.parse
    monkeypatch.setattr(multiscale, "parse", lambda data: parsed.append(1) or original(data))
    assert np.array_equal(array[middle], first)
    assert np.array_equal(array[middle, :, :], first)
    array[middle + 1]  # another plane through the same chunks
    assert parsed == []


def test_a_missing_chunk_reads_as_fill_value(reference_store, tmp_path):
    import shutil

    copy = tmp_path / "partial.sci.zarr"
    shutil.copytree(reference_store, copy)
    (copy / "0" / "c" / "0" / "0" / "0").unlink()
    level0 = napari_sci.open_sci(copy)
    assert not level0[0:32, 0:32, 0:32].any()
    full = napari_sci.open_sci(reference_store)
    assert np.array_equal(level0[40:50, 40:48, 0:40], full[40:50, 40:48, 0:40])


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory, ct_zarr):
    """The same crop as a store of latent-grid chunks (format 3)."""
    from store_helpers import CHUNK  # type: ignore[import-not-found]

    from napari_sci.base.config import StoreConfig, compress_config
    from napari_sci.store.run import compress_store

    out = tmp_path_factory.mktemp("grid") / "ct.sci.zarr"
    config = compress_config(bpv=1.0, steps=30, model="grid", seed=7, compile_step="off")
    compress_store(ct_zarr, out, config, StoreConfig(chunks=CHUNK, workers=0))
    return out


def test_a_grid_store_coarser_level_interpolates_the_latents_at_coarser_coordinates(
        grid_store, ct_volume, monkeypatch):
    """The grid family too: level 1 interpolates the latents and runs the synthesis at every second
    voxel only (no full-resolution box is decoded), and equals the full decode's every second voxel."""
    from napari_sci.models.grid import GridTiles

    expected = _undeblocked(grid_store, ct_volume.shape)[::2, ::2, ::2]
    evaluated = _count_point_evaluations(monkeypatch, GridTiles)
    got = open_store(grid_store).levels[1][...]
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert 0 < sum(evaluated) <= 32 * 24 * 20
