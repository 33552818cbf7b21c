"""Shown when pretrained weights cannot be loaded: says what failed and offers the ways forward.

Choices: pick a local checkpoint file, use the tiny demo model (meaningless results, labelled as such), or cancel
and keep browsing images without a model. The dialog is opened non-modally (``open()``) so tests can drive it.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFileDialog, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget,
)

CHECKPOINT, TINY, CANCEL = "checkpoint", "tiny", "cancel"


class MissingWeightsDialog(QDialog):
    def __init__(self, message: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("missingWeightsDialog")
        self.setWindowTitle("Model weights unavailable")
        self.choice = CANCEL
        self.checkpoint_path: Optional[str] = None

        layout = QVBoxLayout(self)
        head = QLabel("<b>The model's weights could not be loaded.</b> Images can still be browsed; to decompose "
                      "them, choose a checkpoint file or the tiny demo model.")
        head.setWordWrap(True)
        layout.addWidget(head)
        self.details = QPlainTextEdit(message)
        self.details.setReadOnly(True)
        self.details.setMinimumSize(520, 120)
        layout.addWidget(self.details)

        buttons = QDialogButtonBox()
        self.checkpoint_button = QPushButton("Choose checkpoint file…")
        self.tiny_button = QPushButton("Use tiny demo model (meaningless results)")
        self.cancel_button = QPushButton("Cancel")
        buttons.addButton(self.checkpoint_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.tiny_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        layout.addWidget(buttons)
        self.checkpoint_button.clicked.connect(self._choose_checkpoint)
        self.tiny_button.clicked.connect(self.choose_tiny)
        self.cancel_button.clicked.connect(self.reject)

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a CLIP checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth *.bin);;All files (*)"
        )
        if path:
            self.choose_checkpoint(path)

    def choose_checkpoint(self, path: str) -> None:
        """Accept with a checkpoint path (also the entry point tests use instead of the file dialog)."""
        self.choice = CHECKPOINT
        self.checkpoint_path = path
        self.accept()

    def choose_tiny(self) -> None:
        self.choice = TINY
        self.accept()
