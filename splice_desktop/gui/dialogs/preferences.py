"""Preferences: model, device, vocabulary, image mean and zero-shot options.

The dialog edits a ``PipelineConfig``; OK/Apply emit ``applied(config)`` and the main window reloads only what
changed, in the background. No heavy import happens here (the model list is static; any open_clip name may be
typed).
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
    QLabel, QLineEdit, QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget,
)

from splice_desktop.gui.settings import DEFAULT_MODEL, TINY_MODEL, PipelineConfig

COMMON_MODELS = [
    ("ViT-B-32", "laion2b_s34b_b79k"),
    ("ViT-B-32", "openai"),
    ("ViT-B-16", "laion2b_s34b_b88k"),
    ("ViT-L-14", "laion2b_s32b_b82k"),
    ("ViT-L-14", "openai"),
    ("RN50", "openai"),
]
DEVICES = ("auto", "cpu", "cuda", "mps")


def _file_row(edit: QLineEdit, button: QPushButton) -> QWidget:
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    lay.addWidget(button)
    return row


class PreferencesDialog(QDialog):
    applied = Signal(object)  # PipelineConfig

    def __init__(self, config: PipelineConfig, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("preferencesDialog")
        self.setWindowTitle("Preferences")
        self._initial = config
        layout = QVBoxLayout(self)

        # ---- model
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.model_name = QComboBox()
        self.model_name.setEditable(True)
        names = []
        for name, _ in COMMON_MODELS:
            if name not in names:
                names.append(name)
        self.model_name.addItems(names + [TINY_MODEL])
        self.model_name.setToolTip("Any open_clip architecture name. "
                                   f"{TINY_MODEL} is a random demo network: results are meaningless.")
        form.addRow("Architecture", self.model_name)
        self.pretrained = QComboBox()
        self.pretrained.setEditable(True)
        self.pretrained.addItems(sorted({tag for _, tag in COMMON_MODELS}))
        self.pretrained.setToolTip("open_clip pretrained tag; weights come from open_clip's local cache")
        form.addRow("Pretrained tag", self.pretrained)
        self.checkpoint = QLineEdit()
        self.checkpoint.setPlaceholderText("optional: a local .safetensors / .pt file (overrides the tag)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_checkpoint)
        form.addRow("Checkpoint file", _file_row(self.checkpoint, browse))
        self.tiny = QCheckBox("Use the tiny demo model (random weights; results are meaningless)")
        self.tiny.toggled.connect(self._tiny_toggled)
        form.addRow("", self.tiny)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        form.addRow("Device", self.device)
        layout.addWidget(box)

        # ---- vocabulary
        box = QGroupBox("Vocabulary")
        form = QFormLayout(box)
        self.vocab_default = QRadioButton("Bundled default vocabulary")
        self.vocab_file_radio = QRadioButton("File")
        group = QButtonGroup(self)
        group.addButton(self.vocab_default)
        group.addButton(self.vocab_file_radio)
        form.addRow(self.vocab_default)
        self.vocab_path = QLineEdit()
        self.vocab_path.setPlaceholderText("one concept per line, UTF-8")
        vbrowse = QPushButton("Browse…")
        vbrowse.clicked.connect(self._browse_vocab)
        form.addRow(self.vocab_file_radio, _file_row(self.vocab_path, vbrowse))
        self.vocab_size = QSpinBox()
        self.vocab_size.setRange(0, 1_000_000)
        self.vocab_size.setSpecialValueText("all")
        self.vocab_size.setSingleStep(1000)
        form.addRow("Size k", self.vocab_size)
        self.vocab_order = QComboBox()
        self.vocab_order.addItem("ascending frequency (SpLiCE files: keep the last k)", "ascending")
        self.vocab_order.addItem("plain (keep the first k)", "plain")
        form.addRow("Order", self.vocab_order)
        layout.addWidget(box)

        # ---- image mean
        box = QGroupBox("Image mean")
        form = QFormLayout(box)
        self.mean_none = QRadioButton("None (decompose the raw embedding; results say so)")
        self.mean_file_radio = QRadioButton("File (.pt / .npy)")
        self.mean_compute = QRadioButton("Compute from the loaded images")
        mgroup = QButtonGroup(self)
        for b in (self.mean_none, self.mean_file_radio, self.mean_compute):
            mgroup.addButton(b)
        form.addRow(self.mean_none)
        self.mean_path = QLineEdit()
        mbrowse = QPushButton("Browse…")
        mbrowse.clicked.connect(self._browse_mean)
        form.addRow(self.mean_file_radio, _file_row(self.mean_path, mbrowse))
        form.addRow(self.mean_compute)
        layout.addWidget(box)

        # ---- zero-shot
        box = QGroupBox("Zero-shot")
        form = QFormLayout(box)
        self.ensemble = QCheckBox("Prompt ensemble (80 templates per class; slower to build, more accurate)")
        form.addRow(self.ensemble)
        layout.addWidget(box)

        self.note = QLabel("Apply reloads only what changed, in the background.")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self._ok)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.Apply).clicked.connect(self.apply)
        layout.addWidget(self.buttons)
        self.set_config(config)

    # ---- config <-> widgets ---------------------------------------------------------------------------------
    def set_config(self, cfg: PipelineConfig) -> None:
        tiny = cfg.model_name == TINY_MODEL
        self.tiny.setChecked(tiny)
        self.model_name.setCurrentText(DEFAULT_MODEL if tiny else cfg.model_name)
        self.pretrained.setCurrentText(cfg.pretrained or "")
        self.checkpoint.setText(cfg.checkpoint or "")
        self.device.setCurrentText(cfg.device)
        self.vocab_file_radio.setChecked(bool(cfg.vocab_path))
        self.vocab_default.setChecked(not cfg.vocab_path)
        self.vocab_path.setText(cfg.vocab_path or "")
        self.vocab_size.setValue(int(cfg.vocab_size or 0))
        self.vocab_order.setCurrentIndex(max(0, self.vocab_order.findData(cfg.vocab_order)))
        self.mean_compute.setChecked(cfg.mean_from_images)
        self.mean_file_radio.setChecked(bool(cfg.mean_path) and not cfg.mean_from_images)
        self.mean_none.setChecked(not cfg.mean_path and not cfg.mean_from_images)
        self.mean_path.setText(cfg.mean_path or "")
        self.ensemble.setChecked(cfg.ensemble)
        self._tiny_toggled(tiny)

    def config(self) -> PipelineConfig:
        tiny = self.tiny.isChecked()
        vocab_path = self.vocab_path.text().strip() if self.vocab_file_radio.isChecked() else ""
        mean_path = self.mean_path.text().strip() if self.mean_file_radio.isChecked() else ""
        return PipelineConfig(
            model_name=TINY_MODEL if tiny else (self.model_name.currentText().strip() or DEFAULT_MODEL),
            pretrained=None if tiny else (self.pretrained.currentText().strip() or None),
            checkpoint=None if tiny else (self.checkpoint.text().strip() or None),
            device=self.device.currentText(),
            vocab_path=vocab_path or None,
            vocab_size=self.vocab_size.value() or None,
            vocab_order=str(self.vocab_order.currentData() or "ascending"),
            mean_path=mean_path or None,
            mean_from_images=self.mean_compute.isChecked(),
            ensemble=self.ensemble.isChecked(),
        )

    def _tiny_toggled(self, on: bool) -> None:
        for w in (self.model_name, self.pretrained, self.checkpoint):
            w.setEnabled(not on)

    def apply(self) -> None:
        cfg = self.config()
        self._initial = cfg
        self.applied.emit(cfg)

    def _ok(self) -> None:
        if self.config() != self._initial:
            self.apply()
        self.accept()

    # ---- file pickers ---------------------------------------------------------------------------------------
    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth *.bin)")
        if path:
            self.checkpoint.setText(path)
            self.tiny.setChecked(False)

    def _browse_vocab(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Vocabulary", "", "Text files (*.txt);;All files (*)")
        if path:
            self.vocab_path.setText(path)
            self.vocab_file_radio.setChecked(True)

    def _browse_mean(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Image mean", "", "Image means (*.pt *.npy)")
        if path:
            self.mean_path.setText(path)
            self.mean_file_radio.setChecked(True)
