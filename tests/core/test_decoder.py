import numpy as np
import pytest

from napari_sci.base.config import compress_config
from napari_sci.core.codec import encode
from napari_sci.core.decoder import VolumeDecoder, deblock, decode_contents


@pytest.fixture(scope="module")
def encoded(mri):
    config = compress_config(bpv=1.5, steps=150, max_depth=2, min_leaf_side=4, samples_per_block=1024,
                             useful_hidden=4, model="siren")
    return encode(mri, config)


def test_several_blocks_to_exercise_faces(encoded):
    assert len(encoded.partition.blocks) >= 8


@pytest.mark.parametrize("deblocking", [True, False])
def test_any_box_equals_the_same_crop_of_the_full_decode(encoded, deblocking):
    full = decode_contents(encoded.contents, deblocking=deblocking)
    rng = np.random.default_rng(0)
    shape = full.shape
    for _ in range(25):
        start = [int(rng.integers(0, s)) for s in shape]
        stop = [int(rng.integers(a + 1, s + 1)) for a, s in zip(start, shape)]
        box = tuple(zip(start, stop))
        part = decode_contents(encoded.contents, box, deblocking=deblocking)
        np.testing.assert_array_equal(part, full[tuple(slice(a, b) for a, b in box)])


def test_a_slice_touches_only_its_blocks(encoded):
    decoder = VolumeDecoder(encoded.contents)
    touched = decoder.blocks_touching(((0, 1), (0, 40), (0, 36)))
    expected = [i for i, b in enumerate(encoded.partition.blocks) if b.origin[0] == 0]
    assert touched == expected
    assert len(touched) < len(encoded.partition.blocks)


def test_deblock_changes_only_voxels_beside_faces():
    rng = np.random.default_rng(1)
    values = rng.random((6, 8)).astype(np.float32)
    labels = np.zeros((6, 8), dtype=np.int32)
    labels[:, 4:] = 1
    out = deblock(values, labels)
    changed = np.argwhere(out != values)
    assert set(changed[:, 1].tolist()) <= {3, 4}
    expected_p = (values[:, 2] + 2 * values[:, 3] + values[:, 4]) / 4
    np.testing.assert_allclose(out[:, 3], expected_p, rtol=1e-6)
    frozen = deblock(values, labels, exact=np.array([True, False]))
    np.testing.assert_array_equal(frozen[:, :4], values[:, :4])


def test_deblock_reduces_the_step_of_a_seam():
    truth = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (4, 1))
    decoded = truth.copy()
    decoded[:, :8] += 0.1  # two blocks fitted with opposite biases: a step at their face
    decoded[:, 8:] -= 0.1
    labels = np.zeros(truth.shape, dtype=np.int32)
    labels[:, 8:] = 1
    out = deblock(decoded, labels)
    step = truth[0, 8] - truth[0, 7]
    assert abs(out[0, 8] - out[0, 7] - step) < abs(decoded[0, 8] - decoded[0, 7] - step)
    assert np.mean((out - truth) ** 2) < np.mean((decoded - truth) ** 2)


def test_single_planes_at_faces_equal_the_full_decode(encoded):
    full = decode_contents(encoded.contents)
    for axis, size in enumerate(full.shape):
        for k in range(size):
            box = tuple((k, k + 1) if a == axis else (0, s) for a, s in enumerate(full.shape))
            plane = decode_contents(encoded.contents, box)
            np.testing.assert_array_equal(np.take(plane, 0, axis), np.take(full, k, axis))


def test_boxes_that_start_or_end_at_faces_equal_the_full_decode(encoded):
    """A box whose border lies on, or one voxel off, a block face — on several axes at once, where a
    neighbouring block has faces the box's own blocks lack — still decodes as the full volume does."""
    full = decode_contents(encoded.contents)
    shape = full.shape
    faces = [sorted({int(b.origin[a]) for b in encoded.partition.blocks} - {0}) for a in range(3)]
    rng = np.random.default_rng(1)
    for _ in range(60):
        box = []
        for axis in range(3):
            f = int(rng.choice(faces[axis])) if faces[axis] else shape[axis] // 2
            start = int(np.clip(f + rng.integers(-1, 2), 0, shape[axis] - 1))
            stop = int(np.clip(start + rng.integers(1, 4), start + 1, shape[axis]))
            box.append((start, stop))
        part = decode_contents(encoded.contents, tuple(box))
        np.testing.assert_array_equal(part, full[tuple(slice(a, b) for a, b in box)], err_msg=str(box))


@pytest.mark.parametrize("golden", ["golden_v3_context_bspline_residual_shaped", "golden_v2",
                                    "golden_v3_context_residual_filtered"])
def test_blocks_evaluated_on_threads_give_the_sequential_decode(golden, monkeypatch):
    """A large request evaluates its blocks on the decode threads; the volume must be the same as one
    thread's, whichever family or model (forced here on small files by lowering the threshold)."""
    import threading
    from pathlib import Path

    from napari_sci.core import decoder as decoder_module
    from napari_sci.io.container import read_sci

    contents = read_sci(Path(__file__).parents[1] / "data" / f"{golden}.sci")
    monkeypatch.setattr(decoder_module, "DECODE_THREADS", 1)
    alone = decode_contents(contents)
    threads: set[str] = set()
    evaluate = VolumeDecoder.evaluate_block

    def recorded(self, index, local):
        threads.add(threading.current_thread().name)
        return evaluate(self, index, local)

    monkeypatch.setattr(VolumeDecoder, "evaluate_block", recorded)
    monkeypatch.setattr(decoder_module, "DECODE_THREADS", 2)
    monkeypatch.setattr(decoder_module, "PARALLEL_VOXELS", 1)
    together = decode_contents(contents)
    assert threads
    assert all(name.startswith("napari-sci-decode") for name in threads)
    np.testing.assert_array_equal(together, alone)
