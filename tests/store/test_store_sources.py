"""Inputs of a chunked store: TIFF (lazily, spacing from its tags), OME-Zarr (axes and voxel size carried
over), and the refusals of inputs that are not one spatial 2D/3D image."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import napari_sci
from napari_sci.base.config import StoreConfig, compress_config
from napari_sci.core.volume_files import write_volume
from napari_sci.errors import SciInputError
from napari_sci.store.run import compress_store
from napari_sci.store.source import SourceSpec, describe_source, read_region

FAST = {"bpv": 1.0, "steps": 20, "max_depth": 1}


def _ome_group(path, volume, axes, scale, component="s0"):
    group = zarr.create_group(str(path), attributes={"ome": {"version": "0.5", "multiscales": [{
        "name": "cells", "axes": axes,
        "datasets": [{"path": component, "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }]}})
    group.create_array(component, shape=volume.shape, chunks=(16,) * volume.ndim, dtype=volume.dtype)
    group[component][...] = volume
    return path


def test_a_tiff_is_read_region_by_region_with_its_spacing(ct_volume, tmp_path):
    source = tmp_path / "ct.tif"
    write_volume(source, ct_volume[:32, :32, :40], spacing=(2.5, 0.5, 0.5))
    info = describe_source(source)
    assert info.shape == (32, 32, 40)
    assert info.spacing == pytest.approx((2.5, 0.5, 0.5))
    region = read_region(info.spec, (slice(3, 9), slice(0, 32), slice(10, 12)))
    assert np.array_equal(region, ct_volume[3:9, :32, 10:12])
    out = tmp_path / "ct.sci.zarr"
    compress_store(source, out, compress_config(**FAST), StoreConfig(chunks=32, workers=0))
    level0 = napari_sci.open_sci(out)
    assert level0.shape == (32, 32, 40)
    assert level0.levels[0].spacing == pytest.approx((2.5, 0.5, 0.5))


def test_an_ome_zarr_keeps_its_axes_and_voxel_size(ct_volume, tmp_path):
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in ("z", "y", "x")]
    source = _ome_group(tmp_path / "cells.ome.zarr", ct_volume[:32, :32, :32], axes, [300.0, 100.0, 100.0])
    out = tmp_path / "cells.sci.zarr"
    compress_store(source, out, compress_config(**FAST), StoreConfig(chunks=32, workers=0))
    multiscale = dict(zarr.open_group(str(out), mode="r").attrs)["ome"]["multiscales"][0]
    assert multiscale["axes"] == axes
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [300.0, 100.0, 100.0]
    assert napari_sci.open_sci(out).levels[0].spacing == (300.0, 100.0, 100.0)


def test_inputs_that_are_not_one_spatial_image_are_refused(ct_volume, tmp_path):
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space"} for n in ("z", "y", "x")]
    four = _ome_group(tmp_path / "4d.ome.zarr", np.stack([ct_volume[:16, :16, :16]] * 2), axes,
                      [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(SciInputError, match="not all spatial"):
        describe_source(four)
    plain = zarr.create_group(str(tmp_path / "plain.zarr"))
    plain.create_array("a", shape=(4, 4, 4), dtype="uint8")
    with pytest.raises(SciInputError, match="without OME-Zarr multiscales"):
        describe_source(tmp_path / "plain.zarr")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SciInputError, match="unsupported input"):
        describe_source(tmp_path / "notes.txt")
    assert SourceSpec(str(four), "s0").component == "s0"
