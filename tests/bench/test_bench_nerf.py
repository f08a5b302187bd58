"""The NeRF-style baseline: its file fits the budget, holds exactly the network, and decodes alone."""

import numpy as np
import pytest
import torch

from napari_sci.base.config import FitConfig
from napari_sci.base.volume import ValueRange, to_dtype
from napari_sci.bench.nerf import (
    NERF_HEADER_BYTES,
    NerfMLP,
    NerfSpec,
    _coordinates,
    fit_nerf,
    nerf_decode,
    nerf_encode,
    widest_spec,
)
from napari_sci.bench.side_header import SIDE_BYTES
from napari_sci.errors import SciBudgetError

FIT = FitConfig(steps=5, device="cpu", seed=3)


def test_widest_spec_fills_the_budget():
    spec = widest_spec(5000, 3)
    assert spec.file_bytes <= 5000 < NerfSpec(3, spec.width + 1).file_bytes
    assert spec.in_features == 3 * 13
    with pytest.raises(SciBudgetError, match="cannot hold"):
        widest_spec(100, 3)


def test_round_trip_and_byte_count(lsm64):
    volume = lsm64[:8, :16, :16].copy()
    blob, spec, steps = nerf_encode(volume, 4000, FIT, batch=512)
    assert steps == 5
    assert len(blob) == NERF_HEADER_BYTES + 4 * spec.params == SIDE_BYTES + 4 + 4 * spec.params <= 4000
    decoded = nerf_decode(blob)
    assert decoded.shape == volume.shape
    assert decoded.dtype == volume.dtype
    np.testing.assert_array_equal(decoded, nerf_decode(bytes(blob)))
    # The decoder's output is the trained network's, to float32 rounding.
    model, _ = fit_nerf(volume, spec, FIT, batch=512)
    with torch.no_grad():
        raw = model(_coordinates(volume.shape, torch.arange(volume.size))).numpy()
    low, high = float(volume.min()), float(volume.max())
    expected = to_dtype(((raw.astype(np.float64) + 1) * (high - low) / 2 + low).reshape(volume.shape),
                        volume.dtype, ValueRange(low, high))
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1


def test_weights_serialise_exactly():
    spec = NerfSpec(3, 7)
    model = NerfMLP(spec, torch.Generator().manual_seed(1))
    data = model.to_bytes()
    assert len(data) == 4 * spec.params
    assert NerfMLP.from_bytes(spec, data).to_bytes() == data


def test_training_reduces_the_error(mri64):
    volume = mri64[:4, :16, :16].copy()
    spec = NerfSpec(3, 16)
    before, _ = fit_nerf(volume, spec, FitConfig(steps=0, device="cpu"), batch=1024)
    after, _ = fit_nerf(volume, spec, FitConfig(steps=60, device="cpu", lr=1e-2), batch=1024)
    index = torch.arange(volume.size)
    target = torch.from_numpy((volume.astype(np.float32).ravel() - volume.min())
                              / float(np.ptp(volume)) * 2 - 1)
    with torch.no_grad():
        errors = [float((m(_coordinates(volume.shape, index)) - target).square().mean())
                  for m in (before, after)]
    assert errors[1] < errors[0]
