"""The list of files that were skipped, with the reason for each, instead of one dialog per bad file."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHeaderView, QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)


def failure_reason(failure: Any) -> tuple[str, str]:
    """(path, reason) from an ImageLoadError or a (path, reason) pair."""
    if isinstance(failure, tuple):
        return str(failure[0]), str(failure[1])
    path = getattr(failure, "path", "")
    reason = getattr(failure, "reason", None) or str(failure)
    return str(path), str(reason)


class FailedFilesDialog(QDialog):
    def __init__(self, failures: list[Any], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("failedFilesDialog")
        self.setWindowTitle(f"{len(failures)} files skipped")
        self.resize(720, 360)
        self.rows = [failure_reason(f) for f in failures]
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("These files were not loaded. Nothing else was affected."))
        self.table = QTableWidget(len(self.rows), 2)
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, (path, reason) in enumerate(self.rows):
            self.table.setItem(i, 0, QTableWidgetItem(path))
            self.table.setItem(i, 1, QTableWidgetItem(reason))
        self.table.resizeColumnToContents(0)
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy list")
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(self.copy_to_clipboard)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)

    def as_text(self) -> str:
        return "\n".join(f"{p}\t{r}" for p, r in self.rows)

    def copy_to_clipboard(self) -> None:
        QGuiApplication.clipboard().setText(self.as_text())
