"""The progress dialog of File ▸ Save as ``.sci``: bar, status line and *Cancel*, window-modal."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QMainWindow, QProgressDialog, QWidget

from napari_sci._napari.widgets._progress import ProgressClock


def _main_window() -> QWidget | None:
    """The window the dialog belongs to: the active one, else napari's visible main window."""
    active = QApplication.activeWindow()
    if active is not None:
        return active
    return next((w for w in QApplication.topLevelWidgets()
                 if isinstance(w, QMainWindow) and w.isVisible()), None)


class SaveProgress(QProgressDialog):
    """Shows the codec's events while a save runs; *Cancel* emits ``canceled``."""

    def __init__(self, name: str, time_limit: float | None) -> None:
        super().__init__(f"saving {name}…", "Cancel", 0, 0, _main_window())
        self.setWindowTitle(f"napari-sci: saving {name}")
        self.setWindowModality(Qt.WindowModality.WindowModal)  # no second save meanwhile
        self.setAutoClose(False)
        self.setAutoReset(False)
        self.setMinimumDuration(0)
        self.setMinimumWidth(420)
        self.clock = ProgressClock(time_limit)
        self.name = name

    def show_event(self, event: object) -> None:
        """Move the bar and the text for one progress event (the GUI thread)."""
        view = self.clock.view(event)
        if view is None or self.wasCanceled():
            return
        self.setLabelText(f"{self.name}: {view.text}")  # first: a modal setValue processes events
        self.setRange(0, view.maximum)
        self.setValue(view.value)

    def finish(self) -> None:
        self.hide()
        self.deleteLater()
