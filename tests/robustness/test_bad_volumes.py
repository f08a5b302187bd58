"""Bad or unusual volumes: each either round-trips correctly or is refused with a one-line
``SciError`` that names the problem and what would work (in the library and in the CLI)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

import napari_sci
from napari_sci.base.memory import MEMORY_ENV, available_memory, encoder_peak_bytes, parse_size
from napari_sci.base.volume import check_layout, check_volume
from napari_sci.cli import main
from napari_sci.core.lazy import SciArray
from napari_sci.core.volume_files import read_volume
from napari_sci.errors import SciBudgetError, SciConfigError, SciInputError, SciMemoryError
from napari_sci.io.format import file_overhead

FAST = dict(steps=20, seed=0, device="cpu")


def roundtrip(volume: np.ndarray, **settings) -> tuple[np.ndarray, napari_sci.core.codec.EncodeResult]:
    result = napari_sci.compress(volume, **{**FAST, **settings})
    decoded = SciArray(result.contents)[...]
    assert decoded.shape == volume.shape
    assert decoded.dtype == volume.dtype.newbyteorder("=")
    return decoded, result


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv, out=io.StringIO())
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(dtype, bad):
    volume = np.ones((8, 8, 8), dtype=dtype)
    volume[1, 2, 3] = bad
    with pytest.raises(SciInputError, match=r"1 NaN or infinite values; replace them \(e\.g\. numpy"):
        napari_sci.compress(volume, bpv=4, **FAST)


def test_nan_volume_via_cli(tmp_path, capsys):
    volume = np.zeros((8, 8, 8), dtype=np.float32)
    volume[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", volume)
    code, err = run_cli(["compress", str(tmp_path / "nan.npy"), "-o", str(tmp_path / "o.sci"),
                         "--bpv", "4", "-q"], capsys)
    assert_one_line_error(code, err, "NaN", "nan_to_num")
    assert not (tmp_path / "o.sci").exists()


@pytest.mark.parametrize("value", [0, 7, 65535])
def test_constant_volumes_give_a_tiny_exact_file(value):
    volume = np.full((20, 33, 17), value, dtype=np.uint16)
    decoded, result = roundtrip(volume, bpv=0.1)
    assert result.n_bytes == file_overhead(3, 1)
    np.testing.assert_array_equal(decoded, volume)
    assert result.contents.header.blocks["kind"].tolist() == [0]


def test_constant_float_volume_is_exact():
    volume = np.full((9, 10, 11), -3.25, dtype=np.float64)
    decoded, _ = roundtrip(volume, bpv=1.1)
    np.testing.assert_array_equal(decoded, volume)


def test_one_voxel_volume(capsys, tmp_path):
    volume = np.full((1, 1, 1), 42, dtype=np.uint8)
    decoded, _result = roundtrip(volume, bpv=1000)
    np.testing.assert_array_equal(decoded, volume)
    with pytest.raises(SciBudgetError, match="smallest achievable file is 125 bytes = 1000 BPV"):
        napari_sci.compress(volume, bpv=8, **FAST)


@pytest.mark.parametrize("shape", [(5, 37, 23), (1, 40, 48), (3, 64, 9), (17, 13, 11)])
def test_small_and_odd_shapes_round_trip(mri, shape):
    volume = np.ascontiguousarray(mri[: shape[0], : shape[1], : shape[2]])
    decoded, result = roundtrip(volume, bpv=6)
    assert result.n_bytes <= result.target_bytes
    assert decoded.min() >= volume.min()
    assert decoded.max() <= volume.max()


def test_too_small_to_compress_says_so():
    with pytest.raises(SciBudgetError, match="too small to compress: its raw data is 105 bytes"):
        napari_sci.compress(np.arange(105, dtype=np.uint8).reshape(3, 5, 7), ratio=2, **FAST)


@pytest.mark.parametrize("shape", [(40, 32), (24, 31), (33, 17)])
def test_2d_images(ct, shape):
    volume = np.ascontiguousarray(ct[5, : shape[0], : shape[1]])
    decoded, result = roundtrip(volume, ratio=1.4)
    assert result.contents.header.ndim == 2
    assert decoded.min() >= volume.min()
    assert decoded.max() <= volume.max()


@pytest.mark.parametrize("shape", [(1, 200), (64, 1), (2, 2)])
def test_tiny_2d_images_are_refused_clearly(shape):
    with pytest.raises(SciBudgetError, match=r"too small to compress.*store it uncompressed"):
        napari_sci.compress(np.arange(np.prod(shape), dtype=np.uint8).reshape(shape), ratio=1.1,
                            **FAST)


def test_4d_is_refused_with_the_exact_hint():
    with pytest.raises(SciInputError, match=r"4D shape \(2, 8, 8, 8\).*--channel-axis AXIS"):
        check_volume(np.zeros((2, 8, 8, 8), np.uint8))
    with pytest.raises(SciInputError, match=r"axes \[0\] have size 1: numpy.squeeze"):
        check_volume(np.zeros((1, 8, 8, 8), np.uint8))
    with pytest.raises(SciInputError, match="5D"):
        check_volume(np.zeros((2, 2, 4, 4, 4), np.uint8))
    with pytest.raises(SciInputError, match="1D shape"):
        check_volume(np.zeros(10, np.uint8))


def test_4d_via_cli_channel_axis(tmp_path, capsys, mri):
    stack = np.stack([mri[:12, :20, :20], mri[12:24, :20, :20]], axis=1)  # Z, C, Y, X
    tifffile.imwrite(tmp_path / "zcyx.tif", stack)
    out = tmp_path / "out.sci"
    code, err = run_cli(["compress", str(tmp_path / "zcyx.tif"), "-o", str(out), "--bpv", "4",
                         "--steps", "10", "-q"], capsys)
    assert_one_line_error(code, err, "4D", "--channel-axis")
    code, err = run_cli(["compress", str(tmp_path / "zcyx.tif"), "-o", str(out), "--bpv", "4",
                         "--steps", "10", "-q", "--channel-axis", "1"], capsys)
    assert code == 0, err
    assert not out.exists()
    for c in range(2):
        decoded = napari_sci.decode(tmp_path / f"out_c{c}.sci")
        assert decoded.shape == (12, 20, 20)
        assert decoded.dtype == np.uint8
    code, err = run_cli(["compress", str(tmp_path / "zcyx.tif"), "-o", str(out), "--bpv", "4",
                         "--channel-axis", "4"], capsys)
    assert_one_line_error(code, err, "--channel-axis 4 is out of range")


def _ct_hu(ct: np.ndarray) -> np.ndarray:
    return (ct.astype(np.int32) - 1024).astype(np.int16)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16-hu", "float32", "float64", "bool",
                                   "int8", "uint32", "int32", ">u2", "<f8"])
def test_dtypes_round_trip(ct, dtype):
    crop = ct[:8, :16, :16]
    volumes = {
        "uint8": (crop // 20).astype(np.uint8), "uint16": crop, "int16-hu": _ct_hu(crop),
        "float32": crop.astype(np.float32) / 7, "float64": crop.astype(np.float64) * 1e-3 - 0.5,
        "bool": crop > np.median(crop), "int8": (crop // 40 - 50).astype(np.int8),
        "uint32": crop.astype(np.uint32) * 50_000, "int32": crop.astype(np.int32) - 2**20,
        ">u2": crop.astype(">u2"), "<f8": crop.astype("<f8"),
    }
    volume = volumes[dtype]
    decoded, result = roundtrip(volume, ratio=2)
    header = result.contents.header
    assert header.value_min == float(volume.min())
    assert header.value_max == float(volume.max())
    if volume.dtype != np.bool_:
        assert decoded.min() >= volume.min()
        assert decoded.max() <= volume.max()


def test_ct_in_hounsfield_units_keeps_negatives(ct, tmp_path, capsys):
    """ct_aorta as int32 - 1024 cast to int16, through the CLI: TIFF in, .sci, TIFF out."""
    volume = _ct_hu(ct)
    assert volume.min() < -800
    tifffile.imwrite(tmp_path / "hu.tif", volume)
    code, err = run_cli(["compress", str(tmp_path / "hu.tif"), "-o", str(tmp_path / "hu.sci"),
                         "--bpv", "2", "--steps", "20", "-q"], capsys)
    assert code == 0, err
    code, err = run_cli(["decompress", str(tmp_path / "hu.sci"), "-o", str(tmp_path / "back.tif")],
                        capsys)
    assert code == 0, err
    decoded = tifffile.imread(tmp_path / "back.tif")
    assert decoded.dtype == np.int16
    assert decoded.shape == volume.shape
    assert volume.min() <= decoded.min()
    assert decoded.max() <= volume.max()
    assert napari_sci.open_sci(tmp_path / "hu.sci").header.value_min == float(volume.min())


@pytest.mark.parametrize("dtype", ["float16", "int64", "uint64", "complex64", "U3", "object"])
def test_unsupported_dtypes_name_what_works(dtype):
    with pytest.raises(SciInputError, match="is not supported; convert to one of: uint8"):
        check_volume(np.zeros((4, 4, 4), dtype=dtype))


def test_huge_float_range_is_refused():
    volume = np.zeros((8, 8, 8))
    volume[0, 0, 0] = 1e300
    with pytest.raises(SciInputError, match="beyond what float32 networks can hold"):
        napari_sci.compress(volume, bpv=4, **FAST)


def test_not_an_array():
    with pytest.raises(SciInputError, match="expected an array, got list"):
        napari_sci.compress([[1, 2], [3, 4]], bpv=4, **FAST)


def test_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    """The check uses the shape alone: a 10^12-voxel request is refused without touching data."""
    monkeypatch.setenv(MEMORY_ENV, "2G")
    shape = (10_000, 10_000, 10_000)
    needed = encoder_peak_bytes(shape, np.dtype("uint16"))
    with pytest.raises(SciMemoryError, match=r"needs about .* GiB of memory but 2.00 GiB is available"):
        check_layout(shape, np.dtype("uint16"))
    assert needed > 2**40
    fake = np.broadcast_to(np.uint16(3), (2000, 2000, 2000))  # 16 GB as a view of 2 bytes
    with pytest.raises(SciMemoryError, match="compress a crop or tiles"):
        napari_sci.compress(fake, bpv=0.1, **FAST)


def test_memory_limit_default_and_override(monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    detected = available_memory()
    assert detected is None or detected > 0
    monkeypatch.setenv(MEMORY_ENV, "512M")
    assert available_memory() == 512 * 2**20
    assert parse_size("1.5G") == int(1.5 * 2**30)
    assert parse_size("4096") == 4096
    for bad in ("lots", "-1G", "0", "nan"):
        with pytest.raises(SciConfigError, match=MEMORY_ENV):
            parse_size(bad)
    check_layout((64, 64, 64), np.dtype("uint8"), max_bytes=None)  # None disables the check


def test_too_large_via_cli_is_refused_before_reading(tmp_path, capsys, monkeypatch, mri):
    import tifffile as tf

    tf.imwrite(tmp_path / "v.tif", mri)
    monkeypatch.setenv(MEMORY_ENV, "100M")

    def never(*args, **kwargs):
        raise AssertionError("the data was read although the volume is refused")

    monkeypatch.setattr(tf.TiffPageSeries, "asarray", never)
    code, err = run_cli(["compress", str(tmp_path / "v.tif"), "-o", str(tmp_path / "v.sci"),
                         "--bpv", "1", "-q"], capsys)
    assert_one_line_error(code, err, "needs about", "100.0 MiB is available", MEMORY_ENV)
    with pytest.raises(SciMemoryError, match="loading shape"):
        read_volume(tmp_path / "v.tif", max_bytes=1000)


def test_budget_errors_via_cli(tmp_path, capsys, mri):
    tifffile.imwrite(tmp_path / "v.tif", mri)
    code, err = run_cli(["compress", str(tmp_path / "v.tif"), "-o", str(tmp_path / "v.sci"),
                         "--bpv", "0.001", "-q"], capsys)
    assert_one_line_error(code, err, "too small", "smallest achievable file is", "BPV")
    code, err = run_cli(["compress", str(tmp_path / "v.tif"), "-o", str(tmp_path / "v.sci"),
                         "--bpv", "8", "-q"], capsys)
    assert_one_line_error(code, err, "not smaller than the raw volume", "ratio > 1")
    code, err = run_cli(["compress", str(tmp_path / "v.tif"), "-o", str(tmp_path / "v.sci"),
                         "--ratio", "0.5", "-q"], capsys)
    assert_one_line_error(code, err, "not smaller than the raw volume")
    assert not (tmp_path / "v.sci").exists()
