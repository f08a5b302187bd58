"""npe2 writer: File ▸ Save an image layer as ``.sci`` with documented default settings.

napari calls writers synchronously and expects the written paths back. In the viewer the fit runs in a
worker thread while a progress dialog (with *Cancel*) keeps napari's event loop turning; the file is
written atomically by the worker, and a notification gives its size and PSNR. Without a running Qt
application (a script) it encodes directly. The compress widget offers every setting.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from napari_sci._napari._spacing import save_spacing
from napari_sci._napari._worker import CompressJob, Outcome, compress_events, default_threads, start
from napari_sci.base.config import CodingConfig, CompressConfig, FitConfig, compress_config
from napari_sci.core.codec import EncodeResult, encode
from napari_sci.core.events import RunState
from napari_sci.errors import SciError


@dataclass(frozen=True)
class WriterDefaults:
    """Settings of File ▸ Save (docs/usage.md lists them): 0.1 bits per voxel, at most 1000 steps or
    2 min (shorter than the codec's defaults: napari waits for a writer); device, model and format
    are the codec's defaults (auto; the latent-grid model, which writes format 3; ``format`` applies
    to the SIREN model only)."""

    bpv: float = 0.1
    steps: int = 1000
    time_limit: float = 120.0
    device: str = FitConfig.device
    format: int = CodingConfig.format_version
    model: str = CompressConfig.model

    def config(self) -> CompressConfig:
        return compress_config(**asdict(self))


def _spacing(data: Any, meta: dict[str, Any]) -> tuple[float, ...] | None:
    """The layer's scale, or, for an unscaled layer opened from an ImageJ/OME TIFF, the file's."""
    layer = None
    try:
        import napari

        viewer = napari.current_viewer()
        layer = next((la for la in viewer.layers if la.data is data), None) if viewer else None
    except ImportError:
        pass
    return save_spacing(layer, meta.get("scale"), data.ndim)


DEFAULTS = WriterDefaults()


def _in_gui_thread() -> bool:
    from qtpy.QtCore import QThread
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    return app is not None and QThread.currentThread() == app.thread()


def summary(path: str, result: EncodeResult) -> str:
    """The closing message: file, size and fidelity."""
    return (f"saved {Path(path).name}: {result.n_bytes} bytes, {result.bpv:.4f} BPV, ratio "
            f"{result.ratio:.0f}:1, PSNR {result.metrics.psnr_data:.2f} dB")


def _save_in_background(job: CompressJob) -> Outcome[EncodeResult]:
    """Run the job in a worker while a modal progress dialog keeps the event loop turning."""
    from qtpy.QtCore import QEventLoop

    from napari_sci._napari.widgets._save_progress import SaveProgress

    dialog = SaveProgress(Path(job.path).name, job.config.fit.time_limit)
    outcomes: list[Outcome[EncodeResult]] = []
    loop = QEventLoop()
    # loop.quit is connected before the thread starts (a worker that fails at once would otherwise
    # finish unheard and exec() wait for ever); queued from the worker, it is delivered inside exec(),
    # or, with ``finished`` before it, already seen by ``running.running``.
    running = start(compress_events, job, on_event=dialog.show_event, on_outcome=outcomes.append,
                    stop=threading.Event(), on_finished=loop.quit)
    dialog.canceled.connect(running.cancel)
    dialog.show()
    if running.running:
        loop.exec()
    dialog.finish()
    return outcomes[0] if outcomes else Outcome(RunState.FAILED, message="the save ended without a result")


class SaveFailed(OSError):
    """Saving did not write the file (failed or cancelled). An ``OSError``, not a ``ValueError``: npe2
    turns a writer's ``ValueError`` into "not a valid writer", which would hide the reason."""


def write_sci(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Compress one image layer to ``path`` with :data:`DEFAULTS`, atomically (napari's save dialog
    has already confirmed any overwrite); raises :class:`SaveFailed` with one sentence otherwise."""
    config, spacing = DEFAULTS.config(), _spacing(data, meta)
    name = Path(path).name
    if not _in_gui_thread():
        try:  # encode checks the layout before it reads a lazy layer into memory (check_volume)
            encode(data, config, spacing=spacing).write(path, overwrite=True)
        except SciError as error:
            raise SaveFailed(f"napari-sci could not save {name}: {error}") from error
        return [path]
    from napari.utils.notifications import show_info

    job = CompressJob(data, config, path, spacing, overwrite=True, threads=default_threads())
    outcome = _save_in_background(job)
    if outcome.state is RunState.CANCELLED:
        raise SaveFailed(f"napari-sci: saving {name} was cancelled; nothing was written")
    if outcome.state is not RunState.DONE or outcome.value is None:
        raise SaveFailed(f"napari-sci could not save {name}: {outcome.message}")
    show_info(f"napari-sci: {summary(path, outcome.value)}")
    return [path]
