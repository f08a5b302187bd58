"""Partition dock widget: run the ILP on an image layer in a worker and overlay the chosen blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_sci._napari._worker import Job, Outcome, plan, start
from napari_sci._napari.widgets._form import (
    BudgetEdit,
    image_picker,
    layer_volume,
    reports_errors,
    status_label,
)
from napari_sci._napari.widgets._overlay import COLOUR_BY, BlockOverlay, block_features
from napari_sci._napari.widgets._table import BlockTable
from napari_sci.base.config import MODEL_FAMILIES, CompressConfig, PartitionConfig, compress_config
from napari_sci.core.codec import BlockPlan
from napari_sci.core.events import RunState

if TYPE_CHECKING:
    import napari


class PartitionWidget(QWidget):
    """Pick an image, a size target, the model, a_max, M and the tree depth; *Partition* previews the
    blocks (for the SIREN model each block's network size; for the grid model its tiles) that
    compression would use, without fitting anything."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        defaults = PartitionConfig()
        self.image = image_picker(viewer, "image")
        self.budget = BudgetEdit()
        self.max_blocks = SpinBox(label="a_max (blocks)", value=defaults.max_blocks, min=1, max=65535)
        self.top_m = SpinBox(label="M (top FFT terms)", value=defaults.top_m, min=1, max=65535)
        self.depth = SpinBox(label="tree depth", value=defaults.max_depth, min=0, max=6)
        self.model = ComboBox(label="model", choices=MODEL_FAMILIES, value=CompressConfig.model,
                              tooltip="the blocks depend on the model: grid tiles (at most 16, each of "
                                      "32k voxels or more) or SIREN blocks (a_max, sized by the budget)")
        self.colour_by = ComboBox(label="colour by", choices=list(COLOUR_BY))
        self.run_button = PushButton(text="Partition")
        self.status = status_label()
        self.form = Container(widgets=[self.image, self.budget, self.model, self.max_blocks, self.top_m,
                                       self.depth, self.colour_by, self.run_button])
        self.table = BlockTable()
        layout = QVBoxLayout(self)
        for widget in (self.form.native, self.status.native, self.table):
            layout.addWidget(widget)
        self.overlay = BlockOverlay(viewer)
        self.job: Job | None = None
        self._target: Any = None
        self._model = CompressConfig.model
        self.run_button.changed.connect(self.run)
        self.colour_by.changed.connect(self.recolour)

    def reset_choices(self, event: Any = None) -> None:
        """napari calls this when layers change (keeps the image list current)."""
        self.form.reset_choices()

    def config(self) -> CompressConfig:
        """The widget's values as the codec's config (the fields the partition uses)."""
        return compress_config(**self.budget.settings(), max_blocks=int(self.max_blocks.value),
                               top_m=int(self.top_m.value), max_depth=int(self.depth.value),
                               model=self.model.value)

    @reports_errors
    def recolour(self, colour_by: str) -> None:
        """Colour the drawn blocks by another column (D or parameter share)."""
        self.overlay.colour(colour_by)

    @reports_errors
    def run(self) -> None:
        """Partition the chosen image in a worker thread; the overlay is drawn when it finishes."""
        from napari.utils.notifications import show_error

        if self.image.value is None:
            show_error("napari-sci: add an image layer to partition first")
            return
        try:
            data, config = layer_volume(self.image.value), self.config()
        except ValueError as error:
            show_error(f"napari-sci: {error}")
            return
        self._target = self.image.value
        self._model = config.model
        self.run_button.enabled = False
        self.status.value = "partitioning…"
        self.job = start(plan, data, config, on_outcome=self._finished)

    @reports_errors
    def _finished(self, outcome: Outcome[BlockPlan]) -> None:
        from napari.utils.notifications import show_error

        self.run_button.enabled = True
        if outcome.state is not RunState.DONE or outcome.value is None:
            self.status.value = "failed"
            show_error(f"napari-sci: {outcome.message}")
            return
        result = outcome.value
        self.overlay.show(self._target, result, self.colour_by.value)
        self.table.show_blocks(block_features(result))
        n = len(result.partition.blocks)
        if self._model == "grid":  # one λ shares the bits among the tiles during the fit
            self.status.value = (f"{n} latent-grid tile{'s' * (n != 1)}, {result.target_bytes} bytes "
                                 f"shared by one λ while fitting")
        else:
            self.status.value = (f"{n} block{'s' * (n != 1)}, {sum(result.params)} parameters, "
                                 f"{result.target_bytes} bytes")
