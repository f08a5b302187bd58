"""Core work in one napari worker thread: typed events out, one :class:`Outcome` back, no tracebacks.

The functions here run in the worker thread and touch no GUI object; :func:`start` wires them to GUI
callbacks, which napari runs in the main thread. Every exception becomes an ``Outcome`` with a one-line
message, so napari never shows a traceback for a failed run (unexpected errors are logged in full).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from napari_sci._napari._checks import check_output
from napari_sci.base.config import CompressConfig
from napari_sci.core.codec import BlockPlan, EncodeDone, EncodeResult, encode_events, plan_blocks
from napari_sci.core.events import RunState
from napari_sci.core.target_quality import QualitySearch, compress_to_psnr_events
from napari_sci.errors import SciCancelledError, SciError

T = TypeVar("T")
logger = logging.getLogger(__name__)
CANCELLED_MESSAGE = "compression cancelled; nothing written"


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How a run ended: DONE with a value, CANCELLED, or FAILED with a one-line message."""

    state: RunState
    value: T | None = None
    message: str = ""


def failure(error: BaseException) -> Outcome[Any]:
    """An exception as an outcome: our own errors keep their message, others name their type."""
    if isinstance(error, SciCancelledError):
        return Outcome(RunState.CANCELLED, message=CANCELLED_MESSAGE)
    if isinstance(error, SciError):
        return Outcome(RunState.FAILED, message=str(error))
    logger.error("napari-sci: unexpected error in a worker", exc_info=error)
    return Outcome(RunState.FAILED, message=f"unexpected {type(error).__name__}: {error}")


@dataclass(frozen=True)
class CompressJob:
    """Everything a background compression needs; the volume is read in the worker thread.

    With ``search``, the smallest file reaching its PSNR is searched for, ``config.budget`` being the
    first guess (as ``napari_sci.compress(psnr=...)`` does)."""

    volume: Any
    config: CompressConfig
    path: str
    spacing: tuple[float, ...] | None = None
    overwrite: bool = False
    search: QualitySearch | None = None
    threads: int | None = None


def default_threads() -> int:
    """All cores but one, which stays with the viewer, and at least two where there are two.

    On a 2-core machine one thread fitted about 2.6x fewer steps than two, while the viewer stayed
    responsive with two (the fit runs in a worker; PyTorch releases the GIL while computing)."""
    cores = os.cpu_count() or 1
    return 1 if cores < 2 else max(2, cores - 1)


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """PyTorch's CPU threads for one run, restored afterwards (None: leave PyTorch's choice).

    Why: PyTorch takes one thread per core; on a small or shared machine that starves the viewer's
    thread and, oversubscribed, slowed a fit ~40x (see the CLI's ``--threads``)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _codec_events(job: CompressJob, stop: threading.Event) -> Iterator[object]:
    """The core's event stream for the job: one encoding, or a PSNR search of several."""
    # the core checks the layout before it reads a lazy layer into memory (check_volume)
    if job.search is None:
        return encode_events(job.volume, job.config, job.spacing, stop)
    return compress_to_psnr_events(job.volume, job.config, job.search, job.spacing, stop)


def compress_events(job: CompressJob, stop: threading.Event
                    ) -> Generator[object, None, Outcome[EncodeResult]]:
    """Yield the codec's progress events, write the file on success; stop checked after every event."""
    try:
        with cpu_threads(job.threads), closing(_codec_events(job, stop)) as events:  # type: ignore[type-var]
            for event in events:
                if isinstance(event, EncodeDone):
                    if stop.is_set():
                        break
                    check_output(Path(job.path), job.overwrite)  # the GUI's words if it appeared meanwhile
                    event.result.write(job.path, overwrite=job.overwrite)
                    return Outcome(RunState.DONE, event.result)
                yield event
                if stop.is_set():
                    break
        return Outcome(RunState.CANCELLED, message=CANCELLED_MESSAGE)
    except Exception as error:
        return failure(error)


def plan(volume: Any, config: CompressConfig) -> Outcome[BlockPlan]:
    """The partition and allocation encode would use (the partition widget's overlay)."""
    try:
        return Outcome(RunState.DONE, plan_blocks(volume, config))
    except Exception as error:
        return failure(error)


class Job:
    """A started worker and the stop flag its function watches."""

    def __init__(self, worker: Any, stop: threading.Event) -> None:
        self.worker = worker
        self.stop = stop
        self.finished = False
        worker.finished.connect(self._mark_finished)

    def _mark_finished(self) -> None:
        self.finished = True

    def cancel(self) -> None:
        """Ask the run to stop; a fit notices before its next step."""
        self.stop.set()

    @property
    def running(self) -> bool:
        """True from :func:`start` until the worker has finished (also before its thread runs)."""
        return not self.finished


def start(function: Callable[..., Any], *args: Any, on_outcome: Callable[[Outcome[Any]], None],
          on_event: Callable[[object], None] | None = None,
          stop: threading.Event | None = None,
          on_finished: Callable[[], None] | None = None) -> Job:
    """Run ``function(*args)`` (and ``stop=`` when given) in a napari worker thread.

    ``on_event`` receives what a generator function yields, ``on_outcome`` what it returns; both run
    in the GUI thread. ``on_finished`` is connected before the thread starts, so a worker that ends at
    once (an instant failure on a fast machine) still calls it.
    """
    from napari.qt.threading import create_worker

    flag = stop if stop is not None else threading.Event()
    kwargs = {"stop": flag} if stop is not None else {}
    connect: dict[str, Callable[..., Any]] = {"returned": on_outcome}
    if on_event is not None:
        connect["yielded"] = on_event
    worker = create_worker(function, *args, _start_thread=False, _connect=connect, **kwargs)
    job = Job(worker, flag)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return job
