"""Form pieces the dock widgets share: an image-layer picker and the size target."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox

if TYPE_CHECKING:
    import napari

BUDGET_KINDS = ("bits per voxel", "ratio")


def image_picker(viewer: napari.viewer.Viewer, label: str) -> ComboBox:
    """A combo box of the viewer's image layers that follows layers being added and removed."""
    from napari.layers import Image

    def choices(_widget: Any) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]

    picker = ComboBox(label=label, choices=choices, nullable=False)
    viewer.layers.events.inserted.connect(picker.reset_choices)
    viewer.layers.events.removed.connect(picker.reset_choices)
    return picker


class BudgetEdit(Container):
    """The size target: bits per voxel or compression ratio, and its value."""

    def __init__(self, bpv: float = 0.1) -> None:
        self.kind = ComboBox(label="target", choices=BUDGET_KINDS, value=BUDGET_KINDS[0])
        self.amount = FloatSpinBox(label="value", value=bpv, min=1e-4, max=1e6, step=0.05)
        super().__init__(widgets=[self.kind, self.amount], layout="horizontal", labels=False)
        self.kind.changed.connect(self._kind_changed)

    def _kind_changed(self, kind: str) -> None:
        self.amount.value = 0.1 if kind == BUDGET_KINDS[0] else 100.0

    def settings(self) -> dict[str, float]:
        """``{"bpv": value}`` or ``{"ratio": value}``, as ``compress_config`` takes them."""
        key = "bpv" if self.kind.value == BUDGET_KINDS[0] else "ratio"
        return {key: float(self.amount.value)}
