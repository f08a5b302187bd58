"""Reading an input volume region by region, never whole: zarr arrays, OME-Zarr images, TIFF, .npy.

A :class:`SourceSpec` is what a Dask task receives (a path and where the array is in it); each worker
opens the input itself and reads only its chunk's region. TIFFs are read through tifffile's zarr view,
.npy files through a read-only memory map, so no input is ever loaded whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sci.core.volume_files import TIFF_SUFFIXES, tiff_spacing
from napari_sci.errors import SciError, SciInputError, SciPathError

DEFAULT_AXES: tuple[str, ...] = ("z", "y", "x")


@dataclass(frozen=True)
class SourceSpec:
    """Where the input array is: a file or folder, and for a zarr group the array's path in it."""

    path: str
    component: str | None = None


@dataclass(frozen=True)
class SourceInfo:
    """What the input is, learned from its metadata alone."""

    spec: SourceSpec
    shape: tuple[int, ...]
    dtype: np.dtype
    spacing: tuple[float, ...] | None
    axes: tuple[dict[str, str], ...]
    name: str


def _ome_multiscale(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The first OME-Zarr multiscale of group attributes (0.4 at top level, 0.5 under ``ome``)."""
    holder = attrs.get("ome", attrs)
    multiscales = holder.get("multiscales") if isinstance(holder, dict) else None
    if isinstance(multiscales, list) and multiscales and isinstance(multiscales[0], dict):
        return multiscales[0]
    return None


def _ome_scale(dataset: dict[str, Any], ndim: int) -> tuple[float, ...] | None:
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale" and len(transform.get("scale", ())) == ndim:
            scale = tuple(float(s) for s in transform["scale"])
            if all(np.isfinite(s) and s > 0 for s in scale):
                return scale
    return None


def _default_axes(ndim: int) -> tuple[dict[str, str], ...]:
    return tuple({"name": n, "type": "space"} for n in DEFAULT_AXES[-ndim:])


def _describe_zarr(path: Path) -> SourceInfo:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except FileNotFoundError as error:
        raise SciInputError(f"{path} is a folder but not a zarr array or OME-Zarr image") from error
    if isinstance(node, zarr.Array):
        return SourceInfo(SourceSpec(str(path)), tuple(node.shape), np.dtype(node.dtype), None,
                          _default_axes(node.ndim), path.name)
    multiscale = _ome_multiscale(dict(node.attrs))
    if multiscale is None or not multiscale.get("datasets"):
        names = ", ".join(sorted(str(k) for k in node.array_keys())) or "none"
        raise SciInputError(f"{path} is a zarr group without OME-Zarr multiscales; give the path of "
                            f"one of its arrays ({names})")
    dataset = multiscale["datasets"][0]
    component = str(dataset["path"])
    array = node[component]
    axes = tuple(dict(a) if isinstance(a, dict) else {"name": str(a)}
                 for a in multiscale.get("axes", ())) or _default_axes(array.ndim)
    spatial = [i for i, a in enumerate(axes) if a.get("type", "space") == "space"]
    if len(axes) != array.ndim or len(spatial) != array.ndim:
        raise SciInputError(f"{path}: OME-Zarr axes {[a.get('name') for a in axes]} are not all "
                            "spatial; napari-sci compresses 2D/3D spatial images (one channel or time "
                            "point at a time)")
    return SourceInfo(SourceSpec(str(path), component), tuple(array.shape), np.dtype(array.dtype),
                      _ome_scale(dataset, array.ndim), axes, multiscale.get("name") or path.name)


def describe_source(path: str | Path) -> SourceInfo:
    """Shape, dtype, spacing and axes of the input at ``path``; refuses what cannot be read lazily."""
    source = Path(path)
    if not source.exists():
        raise SciPathError(f"input {source} does not exist")
    suffix = source.suffix.lower()
    try:
        if source.is_dir():
            return _describe_zarr(source)
        if suffix in TIFF_SUFFIXES:
            with open_array(SourceSpec(str(source))) as array:
                shape, dtype = tuple(array.shape), np.dtype(array.dtype)
            return SourceInfo(SourceSpec(str(source)), shape, dtype, tiff_spacing(source, len(shape)),
                              _default_axes(len(shape)), source.name)
        if suffix == ".npy":
            array = np.load(source, mmap_mode="r", allow_pickle=False)
            return SourceInfo(SourceSpec(str(source)), tuple(array.shape), np.dtype(array.dtype), None,
                              _default_axes(array.ndim), source.name)
    except SciError:
        raise
    except (OSError, ValueError, KeyError, IndexError) as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SciInputError(f"cannot read {source}: {text}") from error
    raise SciInputError(f"{source}: unsupported input for a chunked store; give a zarr array, an "
                        "OME-Zarr image, a .tif/.tiff or a .npy")


@contextlib.contextmanager
def open_array(spec: SourceSpec) -> Iterator[Any]:
    """The input as a lazily read array (anything with ``shape``, ``dtype`` and basic slicing)."""
    import zarr

    path = Path(spec.path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.imread(path, aszarr=True) as store:
            node = zarr.open(store, mode="r")
            yield node if isinstance(node, zarr.Array) else node["0"]
        return
    if path.suffix.lower() == ".npy":
        yield np.load(path, mmap_mode="r", allow_pickle=False)
        return
    node = zarr.open(str(path), mode="r")
    yield node if spec.component is None else node[spec.component]


def read_region(spec: SourceSpec, slices: Sequence[slice]) -> np.ndarray:
    """The voxels of ``slices`` (a chunk's region) as an in-memory array."""
    with open_array(spec) as array:
        return np.ascontiguousarray(array[tuple(slices)])


def ome_attributes(info: SourceInfo) -> dict[str, Any]:
    """The output store's OME-Zarr 0.5 ``ome`` attributes: one dataset, the input's axes and spacing."""
    ndim = len(info.shape)
    axes = [dict(a) for a in info.axes]
    for axis in axes:
        axis.setdefault("type", "space")
    if info.spacing is None or not any("unit" in a for a in axes):
        for axis in axes:
            axis.setdefault("unit", "micrometer")
    scale = list(info.spacing) if info.spacing is not None else [1.0] * ndim
    return {"version": "0.5", "multiscales": [{
        "name": info.name, "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }]}


def spacing_of(ome: dict[str, Any]) -> tuple[float, ...] | None:
    """The voxel size stored in an output store's ``ome`` attributes."""
    multiscale = _ome_multiscale({"ome": ome})
    if multiscale is None:
        return None
    datasets = multiscale.get("datasets") or [{}]
    scale = next((t.get("scale") for t in datasets[0].get("coordinateTransformations", [])
                  if t.get("type") == "scale"), None)
    return None if scale is None else tuple(float(s) for s in scale)

