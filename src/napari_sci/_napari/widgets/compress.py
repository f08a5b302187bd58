"""Compress dock widget: fit in a background worker with a live plot, progress and Cancel."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QProgressBar, QVBoxLayout, QWidget

from napari_sci._napari._checks import preflight
from napari_sci._napari._layer import sci_layer_data
from napari_sci._napari._views import watch_3d
from napari_sci._napari._worker import (
    CompressJob,
    Job,
    Outcome,
    compress_events,
    default_threads,
    start,
)
from napari_sci._napari.widgets._form import (
    BudgetEdit,
    image_picker,
    layer_volume,
    reports_errors,
    status_label,
)
from napari_sci._napari.widgets._plot import FitPlot, theme_colours
from napari_sci._napari.widgets._progress import describe
from napari_sci.base.config import (
    MODEL_FAMILIES,
    CodingConfig,
    CompressConfig,
    FitConfig,
    PartitionConfig,
    compress_config,
)
from napari_sci.core.codec import EncodeResult
from napari_sci.core.events import FitProgress, FitStarted, RunState, StageStarted
from napari_sci.core.target_quality import FIRST_GUESS_BPV, QualitySearch, QualityTry
from napari_sci.errors import SciPathError

if TYPE_CHECKING:
    import napari

DEVICES = ("auto", "cpu", "cuda")
FORMATS = [("2: quantised, entropy-coded weights", 2), ("1: float32 weights (as in the paper)", 1)]


class CompressWidget(QWidget):
    """Compress an image layer to a ``.sci`` file in the background and open the result lazily.

    The target is a size (bits per voxel or ratio) or a PSNR, for which the core searches the
    smallest file that reaches it. The plot shows the fit's estimated PSNR and loss as it runs;
    *Cancel* stops before the next step and nothing is written. On success the decoded layer appears
    next to the original.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        fit = FitConfig()
        self.image = image_picker(viewer, "image")
        self.budget = BudgetEdit(quality=True)
        self.steps = SpinBox(label="steps", value=fit.steps, min=0, max=10_000_000, step=100)
        self.time_limit = FloatSpinBox(label="time limit (s, 0 = none)", value=fit.time_limit or 0.0,
                                       min=0.0, max=1e6)
        self.device = ComboBox(label="device", choices=DEVICES, value=fit.device)
        self.model = ComboBox(label="model", choices=MODEL_FAMILIES, value=CompressConfig.model,
                              tooltip="grid (the default): latent-grid pyramids trained for rate and "
                                      "distortion (format 3); siren: the paper's funnel SIRENs (format 2 "
                                      "or 1)")
        self.format = ComboBox(label="format", choices=FORMATS, value=CodingConfig().format_version,
                               tooltip="the SIREN model's file format; the grid model writes format 3")
        self.threads = SpinBox(label="CPU threads (0 = all)", value=default_threads(), min=0,
                               max=os.cpu_count() or 1)
        self.max_blocks = SpinBox(label="a_max (blocks)", value=PartitionConfig().max_blocks, min=1,
                                  max=65535)
        self.output = FileEdit(label="output", mode="w", filter="*.sci", value="")
        self.overwrite = CheckBox(label="overwrite", value=False)
        self.run_button = PushButton(text="Compress")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        self.form = Container(widgets=[self.image, self.budget, self.model, self.steps, self.time_limit,
                                       self.device, self.format, self.threads, self.max_blocks,
                                       self.output, self.overwrite, buttons])
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.status = status_label()
        self.plot = FitPlot(theme_colours(getattr(viewer, "theme", "dark")))
        layout = QVBoxLayout(self)
        for widget in (self.form.native, self.progress, self.status.native, self.plot):
            layout.addWidget(widget)
        self.job: Job | None = None
        self.tries: list[QualityTry] = []
        self._source: Any = None
        self._path = Path()
        self._time_limit: float | None = None
        self._fine_tunes = False
        self._fit_started = time.monotonic()
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.image.changed.connect(self._suggest_output)
        self._suggest_output(self.image.value)
        self.model.changed.connect(self._model_chosen)
        self._model_chosen(self.model.value)

    def reset_choices(self, event: Any = None) -> None:
        """napari calls this when layers change (keeps the image list current)."""
        self.form.reset_choices()

    def _model_chosen(self, model: str) -> None:
        """Formats 1 and 2 are the SIREN model's; the grid model always writes format 3."""
        self.format.enabled = model == "siren"

    def config(self) -> CompressConfig:
        """The widget's values as the codec's config (for a PSNR target: the first try's)."""
        limit = float(self.time_limit.value)
        size = self.budget.settings()
        if "psnr" in size:
            size = {"bpv": FIRST_GUESS_BPV}
        return compress_config(**size, steps=int(self.steps.value),
                               time_limit=limit if limit > 0 else None, device=self.device.value,
                               max_blocks=int(self.max_blocks.value), format=int(self.format.value),
                               model=self.model.value)

    def thread_count(self) -> int | None:
        """PyTorch CPU threads for the fit; None (0 in the form) leaves PyTorch's choice."""
        return int(self.threads.value) or None

    def search(self) -> QualitySearch | None:
        """The PSNR search to run, when the target is a PSNR."""
        psnr = self.budget.settings().get("psnr")
        return None if psnr is None else QualitySearch(psnr)

    def output_path(self) -> Path:
        """The chosen file, with ``.sci`` added when missing; a folder or nothing is refused."""
        path = Path(self.output.value).expanduser()
        if str(self.output.value) in ("", ".") or path.is_dir():
            raise SciPathError("choose an output .sci file first")
        return path if path.suffix.lower() == ".sci" else path.with_name(path.name + ".sci")

    def _suggest_output(self, layer: Any) -> None:
        if layer is None or str(self.output.value) not in ("", "."):
            return
        source = getattr(getattr(layer, "source", None), "path", None)
        folder = Path(source).parent if source else Path.cwd()
        self.output.value = folder / f"{layer.name}.sci"

    def event(self, event: QEvent) -> bool:
        """Closing the dock (napari takes the widget out of it) cancels a running fit."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and self.running:
            self.cancel()
        return super().event(event)

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    @reports_errors
    def run(self) -> None:
        """Start compressing the chosen image in a worker thread."""
        from napari.utils.notifications import show_error

        layer = self.image.value
        if layer is None:
            show_error("napari-sci: add an image layer to compress first")
            return
        try:
            data, config, path = layer_volume(layer), self.config(), self.output_path()
            preflight(data, config, path, bool(self.overwrite.value), budget=self.search() is None)
        except ValueError as error:
            self.status.value = str(error)
            show_error(f"napari-sci: {error}")
            return
        self._source, self._path, self._time_limit = layer, path, config.fit.time_limit
        self._fine_tunes = config.model == "siren"  # only SIREN fits on after quantising
        job = CompressJob(data, config, str(path), tuple(float(s) for s in layer.scale),
                          bool(self.overwrite.value), self.search(), self.thread_count())
        self._set_running(True)
        self.tries = []
        self.plot.clear()
        self.job = start(compress_events, job, on_event=self._on_event, on_outcome=self._finished,
                         stop=threading.Event())

    @reports_errors
    def cancel(self) -> None:
        """Stop the running compression; the worker ends before its next fitting step."""
        if self.job is not None:
            self.job.cancel()
            self.status.value = "cancelling…"

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        if running:
            self.progress.setRange(0, 0)

    @reports_errors
    def _on_event(self, event: object) -> None:
        if isinstance(event, FitStarted):
            self._fit_started = time.monotonic()
        view = describe(event, self._time_limit, time.monotonic() - self._fit_started)
        if view is not None:
            self.progress.setRange(0, view.maximum)
            self.progress.setValue(view.value)
            if not (self.job is not None and self.job.stop.is_set()):
                self.status.value = view.text
        if isinstance(event, FitStarted):
            self.plot.clear()
        elif isinstance(event, FitProgress):
            self.plot.add(event)
        elif isinstance(event, StageStarted) and event.stage == "quantise" and self._fine_tunes:
            self.plot.mark("quantised fine-tuning")
        elif isinstance(event, QualityTry):
            self.tries.append(event)

    @reports_errors
    def _finished(self, outcome: Outcome[EncodeResult]) -> None:
        from napari.utils.notifications import show_error, show_info

        self._set_running(False)
        self.progress.setRange(0, 1)
        self.plot.redraw()
        if outcome.state is RunState.DONE and outcome.value is not None:
            self.progress.setValue(1)
            self._add_result(outcome.value)
            return
        self.progress.setValue(0)
        self.status.value = outcome.message
        if outcome.state is RunState.CANCELLED:
            show_info(f"napari-sci: {outcome.message}")
        else:
            show_error(f"napari-sci: {outcome.message}")

    def _add_result(self, result: EncodeResult) -> None:
        """Open the written file lazily and put it right above the original layer."""
        from napari.layers import Layer

        path = self._path
        data, kwargs, kind = sci_layer_data(path)
        layer = Layer.create(data, {**kwargs, "translate": tuple(self._source.translate)}, kind)
        watch_3d(self.viewer)
        self.viewer.layers.append(layer)
        if self._source in self.viewer.layers:
            self.viewer.layers.move(self.viewer.layers.index(layer),
                                    self.viewer.layers.index(self._source) + 1)
        m = result.metrics
        self.status.value = (f"{path.name}: {result.n_bytes} bytes, {result.bpv:.4f} BPV, "
                             f"ratio {result.ratio:.0f}:1, PSNR {m.psnr_data:.2f} dB, "
                             f"SSIM {m.ssim:.3f}"
                             + (f" (smallest of {len(self.tries)} tries)" if self.tries else ""))
