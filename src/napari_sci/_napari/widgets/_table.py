"""A read-only table of the partition's blocks (the same rows as the overlay layer's features)."""

from __future__ import annotations

import pandas as pd
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

COLUMNS = {"block": "{:d}", "level": "{:d}", "origin": "{}", "size": "{}", "D": "{:.4f}",
           "params": "{:d}", "share": "{:.1%}"}
MAX_WIDTH = 560


class BlockTable(QTableWidget):
    """Block number, level, origin, size, D, parameters and parameter share, one block a row."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.setMinimumHeight(160)

    def show_blocks(self, features: pd.DataFrame) -> None:
        self.setRowCount(len(features))
        for row, values in enumerate(features[list(COLUMNS)].itertuples(index=False)):
            for column, (value, fmt) in enumerate(zip(values, COLUMNS.values())):
                self.setItem(row, column, QTableWidgetItem(fmt.format(value)))
        self.resizeColumnsToContents()
        # widen the dock to show every column (up to a limit) rather than scroll sideways
        scrollbar = self.verticalScrollBar().sizeHint().width()
        width = self.horizontalHeader().length() + 2 * self.frameWidth() + scrollbar
        self.setMinimumWidth(min(width, MAX_WIDTH))
