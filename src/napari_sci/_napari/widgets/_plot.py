"""Matplotlib plots in a dock: a small base with ``clear()`` / ``draw()`` hooks and throttled redraws.

Subclasses keep their data and implement ``draw`` (put the data on the axes) and ``clear`` (forget it);
callers ask for a redraw with :meth:`PlotWidget.request_draw`, and the canvas redraws at most once per
``interval_ms`` however fast events arrive, always in the GUI thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_sci.core.events import FitProgress


@dataclass(frozen=True)
class PlotColours:
    """Colours matching napari's theme (dark by default)."""

    background: str = "#262930"
    text: str = "#f0f1f2"
    grid: str = "#414851"
    first: str = "#00bcd4"
    second: str = "#ffb74d"


def theme_colours(theme_name: str) -> PlotColours:
    """Plot colours from a napari theme (falls back to the dark defaults)."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(theme_name)
        return PlotColours(background=theme.canvas.as_hex(), text=theme.text.as_hex(),
                           grid=theme.foreground.as_hex())
    except (KeyError, ValueError, AttributeError):
        return PlotColours()


class PlotWidget(QWidget):
    """A matplotlib figure in a Qt widget that redraws through ``draw()`` only when asked, not too often."""

    def __init__(self, colours: PlotColours | None = None, interval_ms: int = 200) -> None:
        super().__init__()
        self.colours = colours or PlotColours()
        self.figure = Figure(figsize=(4, 2.6), facecolor=self.colours.background, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.redraw)
        self.redraws = 0

    def style(self, axes: object) -> None:
        """Theme one axes: background, ticks, labels and spines in the plot colours."""
        c = self.colours
        axes.set_facecolor(c.background)  # type: ignore[attr-defined]
        axes.tick_params(colors=c.text, labelsize=8)  # type: ignore[attr-defined]
        for spine in axes.spines.values():  # type: ignore[attr-defined]
            spine.set_color(c.grid)

    def request_draw(self) -> None:
        """Redraw soon; calls within one interval collapse into one redraw."""
        if not self._timer.isActive():
            self._timer.start()

    def redraw(self) -> None:
        """Redraw now (the timer calls this)."""
        self._timer.stop()
        self.draw()
        self.canvas.draw_idle()
        self.redraws += 1

    def clear(self) -> None:
        """Forget the data and show empty axes."""
        raise NotImplementedError

    def draw(self) -> None:
        """Put the current data on the axes."""
        raise NotImplementedError


class FitPlot(PlotWidget):
    """Estimated PSNR (left axis) and training loss (right axis, log) against the fitting step, with
    dashed lines where a phase begins (format 2's quantisation-aware fine-tuning)."""

    def __init__(self, colours: PlotColours | None = None, interval_ms: int = 200) -> None:
        super().__init__(colours, interval_ms)
        colours = self.colours
        self.psnr_axes = self.figure.add_subplot()
        self.loss_axes = self.psnr_axes.twinx()
        self.steps: list[int] = []
        self.psnr: list[float] = []
        self.loss: list[float] = []
        self.marks: list[tuple[int, str]] = []
        self._mark_artists: list[object] = []
        (self._psnr_line,) = self.psnr_axes.plot([], [], color=colours.first, lw=1.5)
        (self._loss_line,) = self.loss_axes.plot([], [], color=colours.second, lw=1.0)
        self._label_axes()

    def _label_axes(self) -> None:
        c = self.colours
        for axes in (self.psnr_axes, self.loss_axes):
            self.style(axes)
        self.psnr_axes.set_xlabel("step", color=c.text, fontsize=8)
        self.psnr_axes.set_ylabel("PSNR (dB, estimated)", color=c.first, fontsize=8)
        self.loss_axes.set_ylabel("loss", color=c.second, fontsize=8)
        self.loss_axes.set_yscale("log")
        self.psnr_axes.grid(True, color=c.grid, lw=0.5)

    def add(self, event: FitProgress) -> None:
        """Record one progress report and ask for a (throttled) redraw."""
        self.steps.append(event.step)
        self.psnr.append(event.psnr if math.isfinite(event.psnr) else math.nan)
        self.loss.append(event.loss if event.loss > 0 and math.isfinite(event.loss) else math.nan)
        self.request_draw()

    def mark(self, label: str) -> None:
        """Mark the current step (e.g. where fine-tuning with quantised weights begins)."""
        if self.steps:
            self.marks.append((self.steps[-1], label))
            self.request_draw()

    def clear(self) -> None:
        self.steps, self.psnr, self.loss, self.marks = [], [], [], []
        self.redraw()

    def _draw_marks(self) -> None:
        for artist in self._mark_artists:
            artist.remove()  # type: ignore[attr-defined]
        self._mark_artists = []
        axes, c = self.psnr_axes, self.colours
        for step, label in self.marks:
            self._mark_artists.append(axes.axvline(step, color=c.text, ls="--", lw=0.8, alpha=0.7))
            self._mark_artists.append(axes.text(step, 0.04, f"{label} ", transform=axes.get_xaxis_transform(),
                                                rotation=90, ha="right", va="bottom", fontsize=7,
                                                color=c.text))

    def draw(self) -> None:
        self._psnr_line.set_data(self.steps, self.psnr)
        self._loss_line.set_data(self.steps, self.loss)
        finite_loss = [v for v in self.loss if math.isfinite(v)]
        for axes, has_data in ((self.psnr_axes, any(math.isfinite(v) for v in self.psnr)),
                               (self.loss_axes, bool(finite_loss))):
            if has_data:
                axes.relim()
                axes.autoscale_view()
        if self.steps:
            self.psnr_axes.set_xlim(0, max(self.steps[-1], 1))
        self._draw_marks()
