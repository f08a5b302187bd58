"""The committed golden files must keep decoding the same in every later version.

One file per released format version (v1: raw float32 weights; v2: quantised, entropy-coded weights;
v3: the latent-grid model family) and per version 3 model (v3_context: model 3, context-coded latents;
v3_predictive: model 4, with predicted means; v3_context_bspline, v3_predictive_bspline: models 5 and
6, B-spline upsampling; v3_context_residual, v3_context_bspline_residual: models 7 and 8, a DCT
residual layer; … *_filtered: models 13 and 14, a loop filter) or block kind (v3_exact:
kind 4, tiles stored losslessly).
Regenerate (only when a format version is added, never to make a failing test pass) with
``NAPARI_SCI_REGEN_GOLDEN=1 pytest tests/io/test_golden.py``.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from napari_sci.core.lazy import SciArray
from napari_sci.io.container import parse, serialise
from napari_sci.io.format import CODED_KINDS

DATA = Path(__file__).resolve().parents[1] / "data"
VERSIONS = (1, 2, 3)
# file name → its format version
GOLDENS = {"v1": 1, "v2": 2, "v3": 3, "v3_context": 3, "v3_exact": 3, "v3_predictive": 3,
           "v3_context_bspline": 3, "v3_predictive_bspline": 3, "v3_context_residual": 3,
           "v3_context_bspline_residual": 3, "v3_context_residual_banded": 3,
           "v3_context_bspline_residual_banded": 3, "v3_context_residual_shaped": 3,
           "v3_context_bspline_residual_shaped": 3, "v3_context_residual_filtered": 3,
           "v3_context_bspline_residual_filtered": 3}
# how each golden file was made: (bits per voxel, settings); the *_residual files (models 7 and 8)
# were made by session 26's encoder, which the same settings wrote as models 9 and 10 (*_banded) in
# sessions 27–28 and as models 11 and 12 (*_shaped, here with a block shape given) in sessions 29–31;
# since session 32 they write models 13 and 14 (*_filtered, a loop filter) unless told not to
RECIPES = {"v1": (3.0, {"model": "siren", "format": 1}), "v2": (1.0, {"model": "siren", "format": 2}),
           "v3": (0.05, {"model": "grid", "entropy": "factorised"}),
           "v3_context": (0.05, {"model": "grid", "entropy": "context"}),
           "v3_exact": (0.1, {"model": "grid", "entropy": "context"}),
           "v3_predictive": (0.05, {"model": "grid", "entropy": "predictive"}),
           "v3_context_bspline": (0.05, {"model": "grid", "entropy": "context", "upsampling": "bspline"}),
           "v3_predictive_bspline": (0.05, {"model": "grid", "entropy": "predictive",
                                            "upsampling": "bspline"}),
           "v3_context_residual": (0.25, {"model": "grid", "entropy": "context", "residual": "dct"}),
           "v3_context_bspline_residual": (0.25, {"model": "grid", "entropy": "context", "residual": "dct",
                                                  "upsampling": "bspline"}),
           "v3_context_residual_banded": (0.25, {"model": "grid", "entropy": "context", "residual": "dct",
                                                 "upsampling": "linear"}),
           "v3_context_bspline_residual_banded": (0.25, {"model": "grid", "entropy": "context",
                                                         "residual": "dct", "upsampling": "bspline"}),
           "v3_context_residual_shaped": (0.25, {"model": "grid", "entropy": "context", "residual": "dct",
                                                 "upsampling": "linear", "residual_block": (4, 16, 16),
                                                 "loop_filter": False}),
           "v3_context_bspline_residual_shaped": (0.25, {"model": "grid", "entropy": "context",
                                                         "residual": "dct", "upsampling": "bspline",
                                                         "residual_block": (16, 8, 4), "loop_filter": False}),
           "v3_context_residual_filtered": (0.25, {"model": "grid", "entropy": "context", "residual": "dct",
                                                   "upsampling": "linear", "residual_block": (4, 16, 16)}),
           "v3_context_bspline_residual_filtered": (0.25, {"model": "grid", "entropy": "context",
                                                           "residual": "dct", "upsampling": "bspline"})}
# the crop of the bundled sample each was made from (the grid's tiles are at least 32k voxels)
CROPS = {"v1": np.s_[20:36, 40:72, 40:80], "v2": np.s_[20:36, 40:72, 40:80], "v3": np.s_[16:48, :, :],
         "v3_context": np.s_[16:48, :, :], "v3_exact": np.s_[16:48, :, :],
         "v3_predictive": np.s_[16:48, :, :], "v3_context_bspline": np.s_[16:48, :, :],
         "v3_predictive_bspline": np.s_[16:48, :, :], "v3_context_residual": np.s_[16:48, :, :],
         "v3_context_bspline_residual": np.s_[16:48, :, :], "v3_context_residual_banded": np.s_[16:48, :, :],
         "v3_context_bspline_residual_banded": np.s_[16:48, :, :],
         "v3_context_residual_shaped": np.s_[16:48, :, :],
         "v3_context_bspline_residual_shaped": np.s_[16:48, :, :],
         "v3_context_residual_filtered": np.s_[16:48, :, :],
         "v3_context_bspline_residual_filtered": np.s_[16:48, :, :]}
SPARSE = {"v3_exact": 150}  # values at or under it set to 0: a sparse volume, stored losslessly
# names whose file may be (re)made: only a new one, never a released one
REGENERATE = ()


@pytest.fixture(scope="module", params=list(GOLDENS))
def golden(request, sample) -> tuple[int, bytes, np.ndarray]:
    name = request.param
    version = GOLDENS[name]
    path = DATA / f"golden_{name}.sci"
    decoded = DATA / f"golden_{name}_decoded.npy"
    if os.environ.get("NAPARI_SCI_REGEN_GOLDEN") == "1" and name in REGENERATE:
        import napari_sci

        crop = sample[CROPS[name]]  # BSD-3 Colin27, as bundled
        if name in SPARSE:
            crop = np.where(crop > SPARSE[name], crop, 0).astype(crop.dtype)
        bpv, settings = RECIPES[name]
        siren = {"useful_hidden": 4} if settings["model"] == "siren" else {}
        result = napari_sci.compress(crop, bpv=bpv, steps=300, seed=7, max_depth=2, min_leaf_side=4,
                                     spacing=(1.0, 1.0, 1.0), device="cpu", **siren, **settings)
        path.write_bytes(result.data)
        np.save(decoded, SciArray(result.contents)[...])
    return version, path.read_bytes(), np.load(decoded)


def test_golden_decodes_as_recorded(golden):
    _, data, expected = golden
    decoded = SciArray(parse(data))[...]
    assert decoded.dtype == expected.dtype
    assert decoded.shape == expected.shape
    # bit-identical on the reference platform; at most one grey level apart elsewhere (float32 order)
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    assert difference.max() <= 1
    assert np.mean(difference == 0) > 0.999


def test_the_exact_golden_file_decodes_to_its_volume_without_loss(sample):
    """Kind 4 tiles are lossless: the file decodes to the sparse crop it was made from, voxel for
    voxel, the deblocking leaving them as they are."""
    from napari_sci.io.format import KIND_EXACT

    contents = parse((DATA / "golden_v3_exact.sci").read_bytes())
    assert (contents.header.blocks["kind"] == KIND_EXACT).sum() >= 2
    crop = sample[CROPS["v3_exact"]]
    expected = np.where(crop > SPARSE["v3_exact"], crop, 0).astype(crop.dtype)
    np.testing.assert_array_equal(SciArray(contents)[...], expected)


def test_layout_is_unchanged_for_its_version(golden):
    """Re-serialising what was read gives the same bytes: the layout of that version is frozen."""
    version, data, _ = golden
    contents = parse(data)
    assert contents.header.version == version
    assert serialise(contents.header, contents.payloads) == data


def test_golden_has_several_block_kinds(golden):
    _, data, _ = golden
    blocks = parse(data).header.blocks
    assert len(blocks) > 1
    assert np.isin(blocks["kind"], CODED_KINDS).any()


# --- Compatibility pins (robustness, issue 5) -------------------------------------------------------
# The tests above compare the golden file with itself; these pin it to the outside world, so that a
# layout change, a silent regeneration of the golden file, or a change in what a field means fails
# here unless FORMAT_VERSION is bumped (and a golden file for the new version committed).

GOLDEN_SHA256 = {"v1": "74f21f2844f9d84409ad5cc5fd7057e0f4a69204e21318eea382dc9e75fa7941",
                 "v2": "de4b0f16a7e13d222a6aa340ddb3b67ed925f0ac34682dc9f45ad6b111f729a1",
                 "v3": "b882cfcfe706f06123ebd1dba9574248065c0d19e8d27c4c164986eda98593c9",
                 "v3_context": "fe1b2d74cb2b3dc5694ccb747d19c96955e639d33cfbddf3411d71d022ee0b23",
                 "v3_exact": "b42ce9e596cd40e3d2d5c8c83bc8a1bbce3f6ea5828c11bbf884f01f66b8d082",
                 "v3_predictive": "5adece39cf3a87d692138a761ae92ccaba8a2407a08fc3f300b6a303e2dad394",
                 "v3_context_bspline": "cab01d26caa2baeed277bdabb2b0d2c1212e18765353608de3896b9f745197ee",
                 "v3_predictive_bspline": "f4397cd7543808fd6154923297fe41cb8ac9d01dbeb27bde434895c81d8fb023",
                 "v3_context_residual": "3cf10c492e9269a7261a48d94c2dc8ff2a97cc9ee9560c1f2b00af1e329b6e7d",
                 "v3_context_bspline_residual":
                     "721f7443a53a3c36892839b607920d4a79e6e56646ff54ceb6a6aeab264e9da0",
                 "v3_context_residual_banded":
                     "7cd46f778df98a20f2842afe22b403068c29df8905e19a9b57e2291f978231ba",
                 "v3_context_bspline_residual_banded":
                     "756c143262367ff2312389ba658467e21fc657f10bebeab2873778ee13e8af4e",
                 "v3_context_residual_shaped":
                     "82b83ee900a6e352811eac9dc074a8b4af968e10d58e7a2ecee7be0a5c971247",
                 "v3_context_bspline_residual_shaped":
                     "e51a77802d7f32ab4be4f0fda16ac96d059c129cc934c267e704ad09edf94795",
                 "v3_context_residual_filtered":
                     "01a3fb6efa639ae73f720664217c70aa7e637df1a064835b56179c436a7ecc39",
                 "v3_context_bspline_residual_filtered":
                     "f6b8aa1eadccb7abc182e3c85501adc1efecea0093fea3125f6e74583ab1a22b"}


def test_every_supported_version_has_a_pinned_golden_file():
    import hashlib

    from napari_sci.io.format import FORMAT_VERSION, MODEL_IDS, SUPPORTED_VERSIONS

    assert FORMAT_VERSION in SUPPORTED_VERSIONS
    assert set(SUPPORTED_VERSIONS) == set(VERSIONS) == set(GOLDENS.values())
    models = {parse((DATA / f"golden_{name}.sci").read_bytes()).header.model for name in GOLDENS}
    assert models == set(MODEL_IDS.values())  # every model of version 3 has its file
    for name in GOLDENS:
        path = DATA / f"golden_{name}.sci"
        assert path.exists(), f"commit {path.name} when adding a format version or model"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == GOLDEN_SHA256[name], (
            f"{path.name} changed: golden files are never regenerated for a released version")


def test_golden_v1_header_means_what_it_meant():
    """Field values, not just bytes: swapping two same-typed fields in pack *and* unpack would keep
    serialise(parse(golden)) == golden but change their meaning."""
    h = parse((DATA / "golden_v1.sci").read_bytes()).header
    assert (h.version, h.shape, str(h.dtype), h.spacing) == (1, (16, 32, 40), "uint8", (1.0, 1.0, 1.0))
    assert (h.value_min, h.value_max, h.tree_depth, h.min_leaf_side) == (24.0, 116.0, 2, 4)
    assert (h.layers, h.w0, h.w0_hidden, h.fr) == (7, 20.0, 30.0, pytest.approx(2.2))
    assert (h.partition, h.allocation, h.max_blocks, h.top_m, h.steps, h.seed) == (
        "adaptive", "size-over-d", 50, 1, 300, 7)
    assert h.psnr == pytest.approx(17.9195, abs=1e-3)
    assert h.blocks[["node", "kind", "first_width", "hidden_width", "length"]].tolist() == [
        (1, 2, 0, 0, 0), (2, 1, 18, 4, 932), (3, 2, 0, 0, 0), (4, 1, 16, 4, 868),
        (5, 1, 17, 5, 1136), (6, 1, 35, 5, 1784), (7, 1, 16, 4, 868), (8, 1, 26, 6, 1764)]


def test_writer_matches_the_spec_table_byte_for_byte():
    """pack_header against bytes built here straight from docs/format.md's tables (not from
    format.py's constants), for a 3D and a 2D header."""
    import struct

    from napari_sci.io.format import BLOCK_RECORD, SciHeader, pack_header, pack_preamble

    for ndim in (3, 2):
        shape, spacing = (5, 6, 7)[:ndim], (0.5, 1.5, 2.5)[:ndim]
        blocks = np.zeros(2, dtype=BLOCK_RECORD)
        blocks[0] = (1, 1, 9, 4, -1.5, 3.25, 1234, 0xDEADBEEF)
        blocks[1] = (2, 0, 0, 0, 7.0, 7.0, 0, 0)
        header = SciHeader(shape=shape, dtype=np.dtype("int16"), spacing=spacing, value_min=-2.0,
                           value_max=9.0, tree_depth=1, min_leaf_side=3, layers=7, w0=20.0,
                           w0_hidden=30.0, fr=2.25, partition="equal", allocation="inverse-d",
                           max_blocks=40, top_m=2, steps=123, seed=77, psnr=31.5, blocks=blocks)
        expected = (struct.pack("<BB", ndim, 3) + struct.pack(f"<{ndim}I", *shape)
                    + struct.pack(f"<{ndim}f", *spacing) + struct.pack("<dd", -2.0, 9.0)
                    + struct.pack("<BHB", 1, 3, 7) + struct.pack("<fff", 20.0, 30.0, 2.25)
                    + struct.pack("<BB", 1, 2) + struct.pack("<HH", 40, 2)
                    + struct.pack("<II", 123, 77) + struct.pack("<f", 31.5) + struct.pack("<I", 2)
                    + struct.pack("<IBHHffII", 1, 1, 9, 4, -1.5, 3.25, 1234, 0xDEADBEEF)
                    + struct.pack("<IBHHffII", 2, 0, 0, 0, 7.0, 7.0, 0, 0))
        packed = pack_header(header)
        assert packed == expected
        assert len(packed) == (80 if ndim == 3 else 72) + 25 * 2
        for version in VERSIONS:
            assert pack_preamble(packed, version) == (
                b"\x89SCI\r\n\x1a\n" + struct.pack("<HHII", version, 0, len(packed), zlib_crc(packed)))


def zlib_crc(data: bytes) -> int:
    import zlib

    return zlib.crc32(data) & 0xFFFFFFFF


def test_golden_decodes_the_same_through_every_public_path(golden, tmp_path):
    import napari_sci
    from napari_sci.cli import main

    _, data, expected = golden
    path = tmp_path / "g.sci"
    path.write_bytes(data)
    reference = SciArray(parse(data))[...]
    np.testing.assert_array_equal(napari_sci.decode(path), reference)
    np.testing.assert_array_equal(napari_sci.open_sci(path)[3:9, ::2, -5:], reference[3:9, ::2, -5:])
    assert main(["decompress", str(path), "-o", str(tmp_path / "g.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), reference)
    assert np.abs(reference.astype(int) - expected.astype(int)).max() <= 1
