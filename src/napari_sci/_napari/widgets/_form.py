"""Form pieces the dock widgets share: an image-layer picker and the size target."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label

from napari_sci._napari._spacing import adopt_file_spacing
from napari_sci.errors import SciInputError

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
DECIMALS = 4  # of the target value: 0.025 and 0.005 bits per voxel must survive
SIZE_KINDS = {"bits per voxel": ("bpv", 0.1), "ratio": ("ratio", 100.0)}
QUALITY_KINDS = {"PSNR (dB)": ("psnr", 35.0)}


def one_line(error: BaseException) -> str:
    """An exception as one sentence: our own errors keep their message, others name their type."""
    from napari_sci.errors import SciError

    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, SciError) and text:
        return text
    return f"unexpected {type(error).__name__}" + (f": {text}" if text else "")


def reports_errors(method: F) -> F:
    """For widget callbacks: an exception ends on the widget's status line and in a notification
    (logged in full), never as a traceback dialog or, in a plain Qt application, an abort."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            from napari.utils.notifications import show_error

            logger.error("napari-sci: error in %s", method.__qualname__, exc_info=error)
            message = one_line(error)
            status = getattr(self, "status", None)
            if status is not None:
                status.value = message
            show_error(f"napari-sci: {message}")
            return None

    return guarded  # type: ignore[return-value]


def layer_volume(layer: Any) -> Any:
    """The array to compress or partition: a multiscale layer's full resolution; RGB is refused."""
    if layer.rgb:
        raise SciInputError("RGB(A) images are not supported; split the colour channels first")
    return layer.data[0] if layer.multiscale else layer.data


def status_label() -> Label:
    """A multi-line status text that wraps to the dock's width instead of widening or clipping it."""
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def image_picker(viewer: napari.viewer.Viewer, label: str) -> ComboBox:
    """A combo box of the viewer's image layers that follows layers being added and removed.

    Image layers opened from an ImageJ/OME TIFF at scale 1 take their file's voxel size on the way
    (napari's TIFF reader drops it; see :mod:`napari_sci._napari._spacing`)."""
    from napari.layers import Image

    def choices(_widget: Any) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]

    def physical_scale(layer: Any) -> None:
        if adopt_file_spacing(layer) is not None and len(viewer.layers) == 1:
            viewer.reset_view()

    picker = ComboBox(label=label, choices=choices, nullable=False)
    viewer.layers.events.inserted.connect(lambda event: physical_scale(event.value))
    viewer.layers.events.inserted.connect(picker.reset_choices)
    viewer.layers.events.removed.connect(picker.reset_choices)
    for layer in list(viewer.layers):
        physical_scale(layer)
    return picker


class BudgetEdit(Container):
    """The target: bits per voxel or compression ratio (and, where offered, a PSNR), and its value."""

    def __init__(self, quality: bool = False) -> None:
        self.kinds = {**SIZE_KINDS, **(QUALITY_KINDS if quality else {})}
        first = next(iter(self.kinds))
        self.kind = ComboBox(label="target", choices=list(self.kinds), value=first)
        self.amount = FloatSpinBox(label="value", value=self.kinds[first][1], min=1e-4, max=1e6, step=0.05)
        self.amount.native.setDecimals(DECIMALS)  # magicgui takes 2 from the step: 0.025 became 0.03
        super().__init__(widgets=[self.kind, self.amount], layout="horizontal", labels=False)
        self.kind.changed.connect(self._kind_changed)

    def _kind_changed(self, kind: str) -> None:
        self.amount.value = self.kinds[kind][1]

    def settings(self) -> dict[str, float]:
        """``{"bpv": v}``, ``{"ratio": v}`` or ``{"psnr": v}``: the keyword ``napari_sci.compress`` takes."""
        return {self.kinds[self.kind.value][0]: float(self.amount.value)}
