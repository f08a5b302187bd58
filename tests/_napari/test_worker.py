"""The worker functions (no Qt needed): events out, one outcome back, cancel writes nothing."""

from __future__ import annotations

import threading

import torch

from napari_sci._napari._worker import CANCELLED_MESSAGE, CompressJob, compress_events, failure, plan
from napari_sci.base.config import compress_config
from napari_sci.core.events import FitProgress, RunState
from napari_sci.errors import SciBudgetError, SciCancelledError


def _drain(generator):
    events = []
    try:
        while True:
            events.append(next(generator))
    except StopIteration as stop:
        return events, stop.value


def _job(tiny, path, **settings):
    config = compress_config(bpv=1.0, device="cpu", **{"steps": 30, **settings})
    return CompressJob(tiny, config, str(path), (1.0, 1.0, 1.0))


def test_success_writes_the_file(tiny, tmp_path):
    events, outcome = _drain(compress_events(_job(tiny, tmp_path / "a.sci"), threading.Event()))
    assert outcome.state is RunState.DONE
    assert outcome.value.n_bytes == (tmp_path / "a.sci").stat().st_size
    assert any(isinstance(e, FitProgress) for e in events)


def test_cancel_mid_fit_writes_nothing(tiny, tmp_path):
    stop = threading.Event()
    generator = compress_events(_job(tiny, tmp_path / "b.sci", steps=100_000), stop)
    for event in generator:
        if isinstance(event, FitProgress):
            stop.set()
            break
    _, outcome = _drain(generator)
    assert outcome.state is RunState.CANCELLED
    assert outcome.message == CANCELLED_MESSAGE
    assert list(tmp_path.iterdir()) == []


def test_cancel_before_start_and_failures_are_outcomes(tiny, tmp_path):
    stop = threading.Event()
    stop.set()
    _, outcome = _drain(compress_events(_job(tiny, tmp_path / "c.sci"), stop))
    assert outcome.state is RunState.CANCELLED
    _, outcome = _drain(compress_events(_job(tiny, tmp_path / "no" / "d.sci"), threading.Event()))
    assert outcome.state is RunState.FAILED
    assert "does not exist" in outcome.message
    assert list(tmp_path.iterdir()) == []
    assert plan(tiny, compress_config(bpv=0.01)).state is RunState.FAILED
    assert failure(SciBudgetError("too small")).message == "too small"
    assert failure(SciCancelledError("x")).state is RunState.CANCELLED
    assert failure(RuntimeError("boom")).message == "unexpected RuntimeError: boom"


def test_threads_apply_during_the_run_and_are_restored(tiny, tmp_path):
    job = CompressJob(tiny, compress_config(bpv=1.0, device="cpu", steps=20), str(tmp_path / "t.sci"),
                      threads=1)
    torch.set_num_threads(2)
    try:
        seen = {torch.get_num_threads() for _ in compress_events(job, threading.Event())}
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)  # the module's setting (conftest)
    assert seen == {1}
    assert after == 2
