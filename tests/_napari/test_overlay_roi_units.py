"""Pure helpers of the widgets: block overlay geometry and colours, ROI boxes and ROI metrics."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sci._napari.widgets._overlay import (
    block_colours,
    block_features,
    block_labels,
    box_edges,
    label_features,
)
from napari_sci._napari.widgets._progress import describe, eta_seconds
from napari_sci._napari.widgets._roi import plane_index, rectangle_box, roi_metrics
from napari_sci.base.config import compress_config
from napari_sci.core import metrics
from napari_sci.core.codec import plan_blocks
from napari_sci.core.events import FitProgress
from napari_sci.core.partition import Block
from napari_sci.core.target_quality import QualityTry

BLOCKS = [Block(1, 1, (0, 0, 0), (4, 6, 8), 0.5), Block(2, 1, (4, 0, 0), (4, 6, 8), 0.2)]


def test_box_edges_are_twelve_per_block_and_meet_between_voxels():
    vectors, owner = box_edges((8, 6, 8), BLOCKS)
    assert vectors.shape == (24, 2, 3)
    assert list(owner) == [0] * 12 + [1] * 12
    ends = vectors[:, 0] + vectors[:, 1]
    assert vectors[:, 0].min() == 0  # outer faces stop at the outer voxel centres
    assert ends.max(axis=0).tolist() == [7, 5, 7]
    assert 3.5 in vectors[:12, 0, 0] + vectors[:12, 1, 0]  # inner face half way between z 3 and 4
    assert np.count_nonzero(vectors[:, 1], axis=1).tolist() == [1] * 24  # axis-parallel edges


def test_block_labels_mark_walls_across_the_last_two_axes():
    labels = block_labels((8, 6, 8), BLOCKS)
    assert set(np.unique(labels)) == {1, 2, 3, 4}
    assert labels[1, 2, 3] == 1  # inside block 1
    assert labels[1, 0, 3] == 3  # its wall (label k + n)
    assert labels[5, 2, 7] == 4  # block 2's wall at the last x
    assert labels[0, 2, 3] == 1  # no wall across z: every z-slice shows the same outline


def test_features_and_colours(mri):
    plan = plan_blocks(mri, compress_config(bpv=0.5, max_depth=2, model="siren"))
    features = block_features(plan)
    assert len(features) == len(plan.partition.blocks)
    assert features["params"].sum() == sum(plan.params)
    assert features["share"].sum() == pytest.approx(1.0)
    assert list(features["D"]) == [b.concentration for b in plan.partition.blocks]
    labelled = label_features(features)
    assert sorted(labelled["index"]) == list(range(1, 2 * len(features) + 1))
    colours = block_colours(features["D"].to_numpy())
    assert colours.shape == (len(features), 4)
    assert np.all((colours >= 0) & (colours <= 1))


def test_rectangle_box_and_plane_index():
    box = rectangle_box(np.array([[2.2, 3.0], [2.2, 9.6], [7.9, 9.6], [7.9, 3.0]]), (10, 20, 30), (1, 2))
    assert box == ((3, 8), (3, 10))
    assert rectangle_box(np.array([[-5.0, 25.0], [40.0, 99.0]]), (10, 20, 30), (1, 2)) == ((0, 20), (25, 30))
    assert plane_index((4.4, 0, 0), (10, 20, 30), (1, 2), box) == (4, slice(3, 8), slice(3, 10))
    assert plane_index((99, 0, 0), (10, 20, 30), (1, 2), box)[0] == 9


def test_roi_metrics_come_from_core_metrics(mri):
    rng = np.random.default_rng(0)
    noisy = np.clip(mri.astype(int) + rng.integers(-3, 4, mri.shape), 0, 255).astype(np.uint8)
    a, b = mri[5, 4:30, 6:33], noisy[5, 4:30, 6:33]
    result = roi_metrics(a, b, 255.0)
    assert result.psnr == metrics.psnr(a, b, 255.0)
    assert result.ssim == metrics.ssim(a, b, 255.0)
    assert result.max_error == metrics.max_abs_error(a, b)
    assert result.voxels == a.size
    assert np.isnan(roi_metrics(a[:0], b[:0], 255.0).psnr)


def test_progress_text_and_eta():
    event = FitProgress(step=50, total_steps=200, loss=0.1, psnr=30.0, elapsed=10.0, lr=1e-3)
    assert eta_seconds(event, None) == pytest.approx(30.0)
    assert eta_seconds(event, 15.0) == pytest.approx(5.0)
    # after format 2's phase change event.elapsed restarts; the caller's wall clock is used instead
    assert eta_seconds(event, None, elapsed=20.0) == pytest.approx(60.0)
    view = describe(event, None)
    assert view.value / view.maximum == pytest.approx(0.25)
    # with a time limit that ends the fit first, the bar follows the clock (10 of 15 s)
    timed = describe(event, 15.0)
    assert timed.value / timed.maximum == pytest.approx(10 / 15, abs=1e-3)
    assert "ETA 5 s" in timed.text
    assert "ETA 30 s" in view.text
    assert "PSNR ≈ 30.00 dB" in view.text

    attempt = describe(QualityTry(2, 0.05, 900, 31.25, 3.0, False), None)
    assert attempt.text.startswith("try 2: 0.05 BPV → PSNR 31.25 dB (short of the target)")


def test_measured_data_range_does_not_wrap_on_int16():
    """An original with no stored range is measured as floats (np.ptp would wrap to -5536 here)."""
    from types import SimpleNamespace

    from napari_sci._napari.widgets.compare import data_range

    original = SimpleNamespace(data=np.array([[-30000, 30000]], dtype=np.int16))
    assert data_range(SimpleNamespace(metadata={}), original) == 60000.0
    stored = SimpleNamespace(metadata={"sci": {"value_range": [0, 255]}})
    assert data_range(stored, original) == 255.0
