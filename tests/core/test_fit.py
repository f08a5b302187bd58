import logging
import threading

import numpy as np
import pytest
import torch

from napari_sci.base.config import FitConfig, NetworkSpec
from napari_sci.base.networks import BlockNetwork
from napari_sci.core import fit_step
from napari_sci.core.events import FitCancelled, FitFinished, FitProgress, FitStarted
from napari_sci.core.fit import fit_blocks, resolve_device
from napari_sci.core.partition import Block
from napari_sci.errors import SciConfigError


def two_blocks(volume):
    half = volume.shape[0] // 2
    rest = volume.shape[0] - half
    return [Block(1, 1, (0, 0, 0), (half, *volume.shape[1:]), 0.1),
            Block(2, 1, (half, 0, 0), (rest, *volume.shape[1:]), 0.1)]


def run(volume, steps=60, seed=0, stop=None, **kw):
    blocks = two_blocks(volume)
    nets = [BlockNetwork(20, 9), BlockNetwork(14, 6)]
    lows = np.array([volume[b.slices].min() for b in blocks], dtype=np.float32).astype(np.float64)
    highs = np.array([volume[b.slices].max() for b in blocks], dtype=np.float32).astype(np.float64)
    config = FitConfig(steps=steps, seed=seed, samples_per_block=512, report_every=10, device="cpu", **kw)
    return list(fit_blocks(volume, blocks, nets, lows, highs, float(np.ptp(volume)), NetworkSpec(),
                           config, stop))


def test_events_and_psnr_rises(mri):
    events = run(mri, steps=150)
    assert isinstance(events[0], FitStarted)
    assert events[0].n_networks == 2
    progress = [e for e in events if isinstance(e, FitProgress)]
    assert [p.step for p in progress] == list(range(10, 151, 10))
    assert progress[-1].psnr > progress[0].psnr + 3
    assert progress[-1].lr < progress[0].lr  # the late decay happened
    done = events[-1]
    assert isinstance(done, FitFinished)
    assert done.steps == 150
    assert all(w is not None and w.dtype == np.float32 for w in done.weights)


def test_same_seed_same_weights_other_seed_differs(mri):
    a = run(mri, steps=20, seed=1)[-1].weights
    b = run(mri, steps=20, seed=1)[-1].weights
    c = run(mri, steps=20, seed=2)[-1].weights
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_stop_flag_cancels(mri):
    stop = threading.Event()
    stop.set()
    events = run(mri, steps=1000, stop=stop)
    assert isinstance(events[-1], FitCancelled)
    assert events[-1].step == 0
    counter = iter(range(10**6))
    events = run(mri, steps=1000, stop=lambda: next(counter) >= 25)
    assert isinstance(events[-1], FitCancelled)
    assert events[-1].step == 25


def test_time_limit_ends_early(mri):
    events = run(mri, steps=10**6, time_limit=0.5)
    assert events[-1].reason == "time limit"
    assert events[-1].steps < 10**6


def test_cuda_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(SciConfigError, match="CUDA is not available"):
        resolve_device("cuda")


# the step function (core/fit_step.py): eager, compiled, and the fall-back when compiling fails


def finished(events) -> FitFinished:
    assert isinstance(events[-1], FitFinished)
    return events[-1]


def test_compiled_step_same_psnr_and_reproducible(mri):
    eager = finished(run(mri, steps=60, compile="off"))
    compiled = finished(run(mri, steps=60, compile="default"))
    again = finished(run(mri, steps=60, compile="default"))
    assert compiled.psnr == pytest.approx(eager.psnr, abs=0.1)  # fused kernels round differently
    for x, y in zip(compiled.weights, again.weights):
        np.testing.assert_array_equal(x, y)  # same seed → same weights, compiled too


def test_compile_failure_falls_back_to_eager(mri, monkeypatch, caplog):
    def broken(function, **options):
        def fail(*args):
            raise RuntimeError("no compiler here")
        return fail

    eager = finished(run(mri, steps=20, compile="off"))
    monkeypatch.setattr(torch, "compile", broken)
    with caplog.at_level(logging.INFO, logger="napari_sci.core.fit_step"):
        fallen = finished(run(mri, steps=20, compile="default"))
    assert "fitting eagerly" in caplog.text
    for x, y in zip(eager.weights, fallen.weights):
        np.testing.assert_array_equal(x, y)  # the draws were not consumed twice


def test_resolve_compile():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fit_step.resolve_compile("auto", cuda) == "reduce-overhead"
    assert fit_step.resolve_compile("auto", cpu) == fit_step.CPU_AUTO
    assert fit_step.resolve_compile("reduce-overhead", cpu) == "default"  # no CUDA graphs on a CPU
    assert fit_step.resolve_compile("off", cuda) == "off"


def test_config_refuses_unknown_mode():
    with pytest.raises(SciConfigError, match="compile"):
        FitConfig(compile="fast")
