"""The "Heads (CLIP-InterpreT)" panel: per-head analyses of the selected image against the user's own image pool.

Threads: one serial "analysis" job thread (the forward pass of a new image first, then the latest analysis request
wins) and one "pool" job thread (index build/update, TEXTSPAN). The image's decomposition and the encoded texts are
cached in an ``InterpretSession``, so changing head, layer or text after the first forward pass is a lookup plus a
few dot products. No science here: everything is a call into ``core.interpret``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton, QSpinBox,
                               QTabWidget, QVBoxLayout, QWidget)

from splice_desktop.core.cache import atomic_write_text
from splice_desktop.core.interpret import analyses as an
from splice_desktop.core.interpret.labels import ModelLabels, attribution, head_title, labels_for_loaded
from splice_desktop.gui.widgets.interpret_views import (HeatMapView, NeighbourGrid, load_thumbnail,
                                                        rgb_from_qimage)
from splice_desktop.gui.workers import TaskThread

TOPIC_SCOPES = (
    ("Selected head", "head"),
    ("Selected layer, all heads", "layer"),
    ("Aggregate: all layers", an.AGG_ALL),
    ("Aggregate: last 4 layers", an.AGG_LAST4),
)
CONTRAST_SCOPES = (("Aggregate: all layers", an.AGG_ALL), ("Aggregate: last 4 layers", an.AGG_LAST4))
CUSTOM_PROPERTY = "Custom: ticked heads"
TAB_NAMES = ("property", "topic", "contrastive", "image_nn", "text_nn")


def _display_crop(path: Path, size: int) -> np.ndarray:
    """The image as the model sees it (shortest side resized, centre crop), as RGB uint8 for the overlay."""
    from PIL import Image

    from splice_desktop.core.images import load_image

    img = load_image(path, target_size=size)
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)).convert("RGB"))


class InterpretPanel(QWidget):
    """Five CLIP-InterpreT analyses sharing the selected image, the model and an indexed image pool."""

    analysis_finished = Signal(str)  # tab name, after its result is displayed
    analysis_failed = Signal(str, str)  # tab name, message
    index_finished = Signal(object)  # UpdateReport
    describe_finished = Signal(object)  # dict[(layer, head)] -> TextSpanResult
    forward_finished = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._loaded: Any = None
        self._image: Optional[Path] = None
        self._session: Optional[an.InterpretSession] = None
        self._pool: Any = None
        self._folders: list[Path] = []
        self._labels: Optional[ModelLabels] = None
        self._textspan: dict[tuple[int, int], Any] = {}
        self._text_pool: Any = None
        self._job: Optional[TaskThread] = None
        self._pending_forward = False
        self._pending: Optional[tuple[str, Callable[[Any], Any], Callable[[Any], None]]] = None
        self._pool_job: Optional[TaskThread] = None
        self._results: dict[str, Any] = {}
        self._base_rgb: Optional[np.ndarray] = None
        self._build_ui()
        self._folders = self._saved_folders()
        self._update_pool_label()
        self._refresh_enabled()

    SETTINGS_KEY = "interpret/pool_folders"

    def _saved_folders(self) -> list[Path]:
        from PySide6.QtCore import QSettings

        raw = QSettings().value(self.SETTINGS_KEY, [])
        if isinstance(raw, str):
            raw = [raw] if raw else []
        return [Path(str(f)) for f in (raw or []) if str(f)]

    # ================================================================== UI
    def _build_ui(self) -> None:
        root = QVBoxLayout(self)
        self.status = QLabel("No model loaded.")
        self.status.setWordWrap(True)
        root.addWidget(self.status)

        pool_box = QGroupBox("Image pool (the reference images the neighbour searches look through)")
        pl = QGridLayout(pool_box)
        self.pool_label = QLabel("No folder chosen.")
        self.pool_label.setWordWrap(True)
        self.add_folder_btn = QPushButton("Add folder…")
        self.clear_folders_btn = QPushButton("Clear")
        self.build_btn = QPushButton("Build / update index")
        self.cancel_btn = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)  # shown only while a pool job runs
        self.describe_btn = QPushButton("Describe heads (TEXTSPAN)")
        self.describe_btn.setToolTip("Pick, per head, the pool descriptions explaining most of its variance over the pool")
        self.export_spans_btn = QPushButton("Export head texts…")
        self.export_spans_btn.setToolTip("CSV of the TEXTSPAN texts per head (with the share of variance each explains)")
        self.text_pool_btn = QPushButton("Text pool…")
        self.text_pool_btn.setToolTip("Load a one-description-per-line text file (default: the project's generated pool)")
        pl.addWidget(self.pool_label, 0, 0, 1, 7)
        for i, w in enumerate((self.add_folder_btn, self.clear_folders_btn, self.build_btn, self.cancel_btn,
                               self.describe_btn, self.export_spans_btn, self.text_pool_btn)):
            pl.addWidget(w, 1, i)
        pl.addWidget(self.progress, 2, 0, 1, 7)
        self.pool_note = QLabel("")
        self.pool_note.setWordWrap(True)
        pl.addWidget(self.pool_note, 3, 0, 1, 7)
        root.addWidget(pool_box)

        head_row = QHBoxLayout()
        head_row.addWidget(QLabel("Layer"))
        self.layer_combo = QComboBox()
        head_row.addWidget(self.layer_combo)
        head_row.addWidget(QLabel("Head"))
        self.head_combo = QComboBox()
        self.head_combo.setMinimumContentsLength(18)
        head_row.addWidget(self.head_combo)
        head_row.addStretch(1)
        root.addLayout(head_row)
        self.head_info = QLabel("")
        self.head_info.setWordWrap(True)
        self.head_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.head_info)

        self.tabs = QTabWidget()
        root.addWidget(self.tabs, 1)
        self._build_property_tab()
        self._build_topic_tab()
        self._build_contrastive_tab()
        self._build_image_nn_tab()
        self._build_text_nn_tab()

        self.add_folder_btn.clicked.connect(self._choose_folder)
        self.clear_folders_btn.clicked.connect(lambda: self.set_pool_folders([]))
        self.build_btn.clicked.connect(self.build_index)
        self.cancel_btn.clicked.connect(self.cancel_pool_job)
        self.describe_btn.clicked.connect(self.describe_heads)
        self.text_pool_btn.clicked.connect(self._choose_text_pool)
        self.export_spans_btn.clicked.connect(lambda: self._export_dialog("textspan", "csv"))
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.head_combo.currentIndexChanged.connect(self._on_head_changed)

    def _export_row(self, tab: str) -> QHBoxLayout:
        row = QHBoxLayout()
        png = QPushButton("Export PNG…")
        csv_btn = QPushButton("Export CSV…")
        png.clicked.connect(lambda: self._export_dialog(tab, "png"))
        csv_btn.clicked.connect(lambda: self._export_dialog(tab, "csv"))
        row.addStretch(1)
        row.addWidget(png)
        row.addWidget(csv_btn)
        setattr(self, f"{tab}_export_png", png)
        setattr(self, f"{tab}_export_csv", csv_btn)
        return row

    def _note(self) -> QLabel:
        lab = QLabel("")
        lab.setWordWrap(True)
        return lab

    def _build_property_tab(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        row.addWidget(QLabel("Property"))
        self.property_combo = QComboBox()
        row.addWidget(self.property_combo, 1)
        row.addWidget(QLabel("Top k"))
        self.property_k = QSpinBox()
        self.property_k.setRange(1, 100)
        self.property_k.setValue(an.DEFAULT_K_PROPERTY)
        row.addWidget(self.property_k)
        self.property_run = QPushButton("Find neighbours")
        row.addWidget(self.property_run)
        lay.addLayout(row)
        self.property_heads = QListWidget()
        self.property_heads.setMaximumHeight(110)
        self.property_heads.setFlow(QListWidget.Flow.LeftToRight)  # heads wrap into a compact grid
        self.property_heads.setWrapping(True)
        self.property_heads.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.property_heads.setSpacing(2)
        self.property_heads.setToolTip("Heads averaged for the search; tick your own set with the custom property")
        lay.addWidget(self.property_heads)
        self.property_grid = NeighbourGrid()
        lay.addWidget(self.property_grid, 1)
        self.property_note = self._note()
        lay.addWidget(self.property_note)
        lay.addLayout(self._export_row("property"))
        self.tabs.addTab(w, "Property neighbours")
        self.property_combo.currentIndexChanged.connect(self._on_property_changed)
        self.property_run.clicked.connect(self.run_property_nn)

    def _build_topic_tab(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        self.topic_text = QLineEdit()
        self.topic_text.setPlaceholderText("Text, e.g. 'a photo taken in a city'")
        row.addWidget(self.topic_text, 2)
        self.topic_scope = QComboBox()
        for label, _ in TOPIC_SCOPES:
            self.topic_scope.addItem(label)
        row.addWidget(self.topic_scope, 1)
        self.topic_smooth = QCheckBox("Smooth")
        self.topic_smooth.setToolTip("Bilinear upsampling of the patch grid (off: each patch a flat block, no blur)")
        row.addWidget(self.topic_smooth)
        self.topic_run = QPushButton("Show map")
        row.addWidget(self.topic_run)
        lay.addLayout(row)
        self.topic_view = HeatMapView()
        lay.addWidget(self.topic_view, 1)
        self.topic_note = self._note()
        self.topic_note.setText("Red = strong direct contribution of the patch to the match with the text; blue = weak.")
        lay.addWidget(self.topic_note)
        lay.addLayout(self._export_row("topic"))
        self.tabs.addTab(w, "Topic segmentation")
        self.topic_run.clicked.connect(self.run_topic)
        self.topic_text.returnPressed.connect(self.run_topic)
        self.topic_scope.currentIndexChanged.connect(lambda _i: self._rerun_if_shown("topic"))
        self.topic_smooth.toggled.connect(lambda _b: self._rerun_if_shown("topic"))

    def _build_contrastive_tab(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        self.contrast_text1 = QLineEdit()
        self.contrast_text1.setPlaceholderText("First text")
        self.contrast_text2 = QLineEdit()
        self.contrast_text2.setPlaceholderText("Second text")
        self.contrast_scope = QComboBox()
        for label, _ in CONTRAST_SCOPES:
            self.contrast_scope.addItem(label)
        self.contrast_run = QPushButton("Compare")
        for x in (self.contrast_text1, self.contrast_text2, self.contrast_scope, self.contrast_run):
            row.addWidget(x)
        lay.addLayout(row)
        maps = QHBoxLayout()
        self.contrast_view1 = HeatMapView()
        self.contrast_view2 = HeatMapView()
        maps.addWidget(self.contrast_view1)
        maps.addWidget(self.contrast_view2)
        lay.addLayout(maps, 1)
        self.contrast_note = self._note()
        self.contrast_note.setText(
            "Both maps share one symmetric scale: red where the patch favours that map's text over the other."
        )
        lay.addWidget(self.contrast_note)
        lay.addLayout(self._export_row("contrastive"))
        self.tabs.addTab(w, "Contrastive segmentation")
        self.contrast_run.clicked.connect(self.run_contrastive)
        self.contrast_scope.currentIndexChanged.connect(lambda _i: self._rerun_if_shown("contrastive"))

    def _build_image_nn_tab(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        row.addWidget(QLabel("Pool images most similar to the selected image on the selected head.  Top k"))
        self.image_k = QSpinBox()
        self.image_k.setRange(1, 100)
        self.image_k.setValue(an.DEFAULT_K_IMAGE)
        row.addWidget(self.image_k)
        self.image_run = QPushButton("Find neighbours")
        row.addWidget(self.image_run)
        row.addStretch(1)
        lay.addLayout(row)
        self.image_grid = NeighbourGrid()
        lay.addWidget(self.image_grid, 1)
        self.image_note = self._note()
        lay.addWidget(self.image_note)
        lay.addLayout(self._export_row("image_nn"))
        self.tabs.addTab(w, "Image neighbours (head)")
        self.image_run.clicked.connect(self.run_image_nn)

    def _build_text_nn_tab(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        self.textnn_text = QLineEdit()
        self.textnn_text.setPlaceholderText("Text, e.g. 'Photo taken in Bangkok, Thailand'")
        row.addWidget(self.textnn_text, 2)
        row.addWidget(QLabel("Top k"))
        self.text_k = QSpinBox()
        self.text_k.setRange(1, 100)
        self.text_k.setValue(an.DEFAULT_K_TEXT)
        row.addWidget(self.text_k)
        self.textnn_run = QPushButton("Find images")
        row.addWidget(self.textnn_run)
        lay.addLayout(row)
        self.text_grid = NeighbourGrid()
        lay.addWidget(self.text_grid, 1)
        self.text_note = self._note()
        lay.addWidget(self.text_note)
        lay.addLayout(self._export_row("text_nn"))
        self.tabs.addTab(w, "Text neighbours (head)")
        self.textnn_run.clicked.connect(self.run_text_nn)
        self.textnn_text.returnPressed.connect(self.run_text_nn)

    # ================================================================== public API
    def set_model(self, loaded: Any) -> None:
        """New model (or None): drops the cached decomposition, re-opens the pool index for this model."""
        if loaded is self._loaded:
            return
        self.cancel_pool_job()
        self._loaded = loaded
        self._session = None
        self._pool = None
        self._textspan = {}
        self._results.clear()
        self._clear_views()
        self._labels = labels_for_loaded(loaded) if loaded is not None else None
        self._fill_layer_combo()
        if loaded is not None:
            self._open_pool()
            self._request_forward()
        self._update_status()
        self._refresh_enabled()

    def set_image(self, path: Optional[str | Path]) -> None:
        """New selected image: one forward pass in the background; analyses then answer from its cache."""
        new = Path(path) if path is not None else None
        if new == self._image:
            return
        self._image = new
        self._results.clear()
        self._clear_views(keep_text_nn=True)
        self._base_rgb = None
        if new is not None and self._loaded is not None:
            self._request_forward()
        self._update_status()
        self._refresh_enabled()

    def set_pool_folders(self, folders: list[str | Path]) -> None:
        self.cancel_pool_job()
        self._folders = [Path(f) for f in folders]
        from PySide6.QtCore import QSettings

        QSettings().setValue(self.SETTINGS_KEY, [str(f) for f in self._folders])
        self._pool = None
        self._textspan = {}
        if self._loaded is not None:
            self._open_pool()
        self._update_pool_label()
        self._refresh_enabled()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel and join every thread this panel started (the main window calls this on close)."""
        self._pending = None
        self._pending_forward = False
        for job in (self._job, self._pool_job):
            if job is not None:
                job.cancel()
        for job in (self._job, self._pool_job):
            if job is not None and job.isRunning():
                job.wait(timeout_ms)
        self._job = None
        self._pool_job = None

    def is_busy(self) -> bool:
        return any(j is not None and j.isRunning() for j in (self._job, self._pool_job)) or bool(
            self._pending or self._pending_forward
        )

    @property
    def pool(self) -> Any:
        return self._pool

    @property
    def session(self) -> Optional[an.InterpretSession]:
        return self._session

    # ================================================================== model / pool helpers
    def _fill_layer_combo(self) -> None:
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        if self._loaded is not None:
            try:
                from splice_desktop.core.interpret.heads import HeadDecomposer

                probe = HeadDecomposer(self._loaded, layers=[])
                n_layers, n_heads = probe.num_layers, probe.num_heads
            except Exception as exc:  # noqa: BLE001 - non-ViT models: the panel explains instead of crashing
                self._n_layers, self._n_heads = 0, 0
                self.status.setText(f"Per-head analyses are unavailable for this model: {exc}")
                self.layer_combo.blockSignals(False)
                return
            self._n_layers, self._n_heads = n_layers, n_heads
            for l in range(n_layers):
                self.layer_combo.addItem(f"Layer {l}", l)
            self.layer_combo.setCurrentIndex(n_layers - 1)
        else:
            self._n_layers, self._n_heads = 0, 0
        self.layer_combo.blockSignals(False)
        self._fill_head_combo()
        self._fill_properties()

    def _label_map(self) -> Optional[dict[tuple[int, int], str]]:
        return dict(self._labels.labels) if self._labels is not None else None

    def _fill_head_combo(self) -> None:
        layer = self.current_layer()
        keep = self.head_combo.currentIndex()
        self.head_combo.blockSignals(True)
        self.head_combo.clear()
        labels = self._label_map()
        for h in range(getattr(self, "_n_heads", 0)):
            self.head_combo.addItem(head_title(layer, h, labels), h)
            ts = self._textspan.get((layer, h))
            if ts is not None:
                self.head_combo.setItemData(h, "\n".join(ts.texts[:5]), Qt.ItemDataRole.ToolTipRole)
        if self.head_combo.count():
            self.head_combo.setCurrentIndex(keep if 0 <= keep < self.head_combo.count() else 0)
        self.head_combo.blockSignals(False)
        self._update_head_info()

    def current_layer(self) -> int:
        d = self.layer_combo.currentData()
        return int(d) if d is not None else 0

    def current_head(self) -> int:
        d = self.head_combo.currentData()
        return int(d) if d is not None else 0

    def _update_head_info(self) -> None:
        if self._loaded is None or not getattr(self, "_n_heads", 0):
            self.head_info.setText("")
            return
        l, h = self.current_layer(), self.current_head()
        parts = []
        if self._labels is not None:
            lab = self._labels.labels.get((l, h))
            src = attribution().get("labels", {}).get("paper", "CLIP-InterpreT")
            if lab:
                parts.append(f"Published label: <b>{lab}</b> (a hint from {src.split(chr(39))[0].strip()}"
                             " CLIP-InterpreT, LLM-made; not ground truth).")
            else:
                parts.append("No published label for this head (labels cover the last 4 layers).")
            if (l, h) in self._labels.high_ccs:
                parts.append("High concept consistency (CCS 5/5 in the follow-up paper, arXiv:2503.11103).")
            elif (l, h) in self._labels.low_ccs:
                parts.append("Low concept consistency (CCS ≤ 1): its label is least reliable.")
        ts = self._textspan.get((l, h))
        if ts is not None:
            parts.append("TEXTSPAN on this pool: " + "; ".join(f"“{t}”" for t in ts.texts[:5]))
        elif self._labels is None:
            parts.append("No published labels for this model: use “Describe heads (TEXTSPAN)” to describe heads by "
                         "the texts that explain them on your pool.")
        self.head_info.setText(" ".join(parts))

    def _fill_properties(self) -> None:
        self.property_combo.blockSignals(True)
        self.property_combo.clear()
        if self._labels is not None:
            for name in self._labels.properties:
                self.property_combo.addItem(f"{name} (published)", name)
        self.property_combo.addItem(CUSTOM_PROPERTY, None)
        self.property_combo.blockSignals(False)
        self._on_property_changed()

    def _pool_layers(self) -> tuple[int, ...]:
        if self._pool is not None:
            return tuple(self._pool.layers)
        n = getattr(self, "_n_layers", 0)
        return tuple(range(max(0, n - 4), n))

    def _on_property_changed(self, *_a: Any) -> None:
        name = self.property_combo.currentData()
        published = set(self._labels.properties.get(name, ())) if (self._labels is not None and name) else set()
        self.property_heads.clear()
        labels = self._label_map()
        heads = [(l, h) for l in self._pool_layers() for h in range(getattr(self, "_n_heads", 0))]
        for l, h in sorted(set(heads) | published):
            item = QListWidgetItem(head_title(l, h, labels))
            item.setData(Qt.ItemDataRole.UserRole, (l, h))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if (l, h) in published else Qt.CheckState.Unchecked)
            self.property_heads.addItem(item)

    def set_custom_heads(self, heads: list[tuple[int, int]]) -> None:
        """Select the custom property and tick exactly ``heads`` (used by tests and for user sets)."""
        self.property_combo.setCurrentIndex(self.property_combo.findText(CUSTOM_PROPERTY))
        wanted = set(heads)
        for i in range(self.property_heads.count()):
            it = self.property_heads.item(i)
            it.setCheckState(Qt.CheckState.Checked if tuple(it.data(Qt.ItemDataRole.UserRole)) in wanted
                             else Qt.CheckState.Unchecked)

    def ticked_heads(self) -> list[tuple[int, int]]:
        out = []
        for i in range(self.property_heads.count()):
            it = self.property_heads.item(i)
            if it.checkState() == Qt.CheckState.Checked:
                out.append(tuple(it.data(Qt.ItemDataRole.UserRole)))
        return out

    def _on_layer_changed(self, *_a: Any) -> None:
        self._fill_head_combo()
        self._rerun_head_tabs()

    def _on_head_changed(self, *_a: Any) -> None:
        self._update_head_info()
        self._rerun_head_tabs()

    def _rerun_head_tabs(self) -> None:
        """Layer/head changed: refresh the visible head-based result from cached tensors."""
        tab = TAB_NAMES[self.tabs.currentIndex()]
        if tab in ("topic", "image_nn", "text_nn"):
            self._rerun_if_shown(tab)

    def _rerun_if_shown(self, tab: str) -> None:
        if tab in self._results:
            {"topic": self.run_topic, "contrastive": self.run_contrastive, "image_nn": self.run_image_nn,
             "text_nn": self.run_text_nn, "property": self.run_property_nn}[tab]()

    def _open_pool(self) -> None:
        if not self._folders or self._loaded is None:
            self._pool = None
            self._update_pool_label()
            return
        try:
            from splice_desktop.core.interpret.pool import PoolIndex

            self._pool = PoolIndex(self._loaded, self._folders)
        except Exception as exc:  # noqa: BLE001 - shown to the user, panel stays usable for segmentation
            self._pool = None
            self.pool_note.setText(f"Cannot open the pool index: {exc}")
        self._on_property_changed()
        self._update_pool_label()

    def _update_pool_label(self) -> None:
        if not self._folders:
            self.pool_label.setText("No folder chosen. The neighbour searches need a pool: add a folder of images.")
        else:
            self.pool_label.setText("Folders: " + "; ".join(str(f) for f in self._folders))
        n = len(self._pool) if self._pool is not None else 0
        if self._pool is None:
            self.pool_note.setText("Pool not indexed." if self._folders else "")
        else:
            note = f"Indexed {n} images (layers {', '.join(map(str, self._pool.layers))})."
            if n and n < 1000:
                note += (" A small pool: neighbour results reflect only these images, and TEXTSPAN descriptions "
                         "are noisier below about 1,000 images.")
            self.pool_note.setText(note)

    def _update_status(self) -> None:
        if self._loaded is None:
            self.status.setText("No model loaded.")
            return
        bits = [f"Model: {getattr(getattr(self._loaded, 'spec', None), 'label', self._loaded.key)}."]
        if getattr(self._loaded, "meaningless", False):
            bits.append("<b>Tiny random demo model: every map and neighbour here is meaningless.</b>")
        if self._image is None:
            bits.append("Select an image to analyse (text neighbours work without one).")
        elif self._session is not None and self._session.image_path == self._image:
            bits.append(f"Image: {self._image.name} (decomposed; changes answer from cache).")
        else:
            bits.append(f"Image: {self._image.name} (decomposing…)")
        self.status.setText(" ".join(bits))

    def _refresh_enabled(self) -> None:
        has_model = self._loaded is not None and getattr(self, "_n_heads", 0) > 0
        has_pool = self._pool is not None and len(self._pool) > 0
        busy_pool = self._pool_job is not None and self._pool_job.isRunning()
        self.add_folder_btn.setEnabled(not busy_pool)
        self.clear_folders_btn.setEnabled(not busy_pool and bool(self._folders))
        self.build_btn.setEnabled(has_model and bool(self._folders) and not busy_pool)
        self.cancel_btn.setEnabled(busy_pool)
        self.describe_btn.setEnabled(has_model and has_pool and not busy_pool)
        self.export_spans_btn.setEnabled(bool(self._textspan))
        for b in (self.topic_run, self.contrast_run):
            b.setEnabled(has_model and self._image is not None)
        # neighbour searches wait while the pool is being rebuilt (its size changes under them)
        self.image_run.setEnabled(has_model and has_pool and self._image is not None and not busy_pool)
        self.property_run.setEnabled(has_model and has_pool and self._image is not None and not busy_pool)
        self.textnn_run.setEnabled(has_model and has_pool and not busy_pool)

    def _clear_views(self, keep_text_nn: bool = False) -> None:
        for v in (self.topic_view, self.contrast_view1, self.contrast_view2):
            v.clear()
        self.property_grid.clear()
        self.image_grid.clear()
        if not keep_text_nn:
            self.text_grid.clear()

    # ================================================================== analysis job queue
    def _request_forward(self) -> None:
        if self._loaded is None or self._image is None:
            return
        self._pending_forward = True
        self._pump()

    def _submit(self, tab: str, compute: Callable[[an.InterpretSession], Any], show: Callable[[Any], None]) -> None:
        """Queue an analysis; if one is running, only the latest request waits (older ones are dropped)."""
        self._pending = (tab, compute, show)
        self._pump()

    def _pump(self) -> None:
        if self._job is not None and self._job.isRunning():
            return
        self._job = None
        if self._pending_forward:
            self._pending_forward = False
            self._start_forward()
        elif self._pending is not None:
            tab, compute, show = self._pending
            self._pending = None
            self._start_analysis(tab, compute, show)

    def _session_for(self, loaded: Any) -> an.InterpretSession:
        """Called on the job thread (building the decomposer's constants costs up to seconds for ViT-L)."""
        session = self._session
        if session is None or session.loaded is not loaded:
            session = an.InterpretSession(loaded)
        return session

    def _adopt(self, session: an.InterpretSession) -> None:
        if session.loaded is self._loaded:
            self._session = session

    def _start_forward(self) -> None:
        loaded, image = self._loaded, self._image
        if loaded is None or image is None:
            self._pump()
            return
        display = max(224, int(loaded.image_size))

        def work(ctx: Any) -> Any:
            ctx.progress(0, 0, f"Decomposing {image.name}…")
            session = self._session_for(loaded)
            session.set_image(image)
            return session, image, _display_crop(image, display)

        def done(value: Any) -> None:
            session, img, rgb = value
            self._adopt(session)
            if img == self._image and self._loaded is loaded:
                self._base_rgb = rgb
                self.forward_finished.emit()
            self._update_status()

        self._start_job("forward", work, done)

    def _start_analysis(self, tab: str, compute: Callable[[an.InterpretSession], Any], show: Callable[[Any], None]) -> None:
        loaded = self._loaded
        if loaded is None:
            return

        def work(ctx: Any) -> Any:
            session = self._session_for(loaded)
            return session, compute(session)

        def done(value: Any) -> None:
            session, result = value
            self._adopt(session)
            if self._loaded is loaded:
                show(result)
                self.analysis_finished.emit(tab)

        self._start_job(tab, work, done)

    def _start_job(self, name: str, work: Callable[[Any], Any], done: Callable[[Any], None]) -> None:
        job = TaskThread(work, name=f"interpret-{name}", parent=self)
        self._job = job

        def ok(value: Any) -> None:
            try:
                done(value)
            except Exception as exc:  # noqa: BLE001 - a display problem must be visible, not a silent crash
                self._job_failed(name, exc)
            finally:
                self._job_finished(job)

        def failed(exc: Any) -> None:
            self._job_failed(name, exc)
            self._job_finished(job)

        job.succeeded.connect(ok)
        job.failed.connect(failed)
        job.cancelled.connect(lambda: self._job_finished(job))
        job.start()

    def _job_failed(self, name: str, exc: Any) -> None:
        msg = str(exc) or type(exc).__name__
        note = {"property": self.property_note, "topic": self.topic_note, "contrastive": self.contrast_note,
                "image_nn": self.image_note, "text_nn": self.text_note}.get(name)
        if note is not None:
            note.setText(f"Could not run: {msg}")
        else:
            self.status.setText(f"Could not decompose the image: {msg}")
        self.analysis_failed.emit(name, msg)

    def _job_finished(self, job: TaskThread) -> None:
        job.wait(2000)
        if self._job is job:
            self._job = None
        job.deleteLater()
        self._refresh_enabled()
        self._pump()

    # ================================================================== the five analyses
    def _pool_ready(self, note: QLabel) -> bool:
        if self._pool is None or len(self._pool) == 0:
            note.setText("Build the pool index first (add a folder of images, then Build / update index).")
            return False
        if self._pool_job is not None and self._pool_job.isRunning():
            note.setText("The pool is being updated; try again when it has finished.")
            return False
        return True

    def _pool_caption(self, res: an.Neighbours, tab: str = "") -> str:
        meaning = ("score = this head's direct contribution to the image's cosine with the text" if tab == "text_nn"
                   else "score = raw dot product of head contributions")
        return f"Searched {res.searched} images; results reflect only this pool. ({res.description}; {meaning})"

    def _show_neighbours(self, tab: str, grid: NeighbourGrid, note: QLabel, res: an.Neighbours) -> None:
        self._results[tab] = res
        items = [(load_thumbnail(p), p.name, float(s)) for p, s in zip(res.paths, res.scores)]
        grid.set_items(items, res.description)
        note.setText(self._pool_caption(res, tab))

    def run_property_nn(self) -> None:
        pool, k = self._pool, self.property_k.value()
        heads = self.ticked_heads()
        name = self.property_combo.currentData() or "custom"
        if not self._pool_ready(self.property_note):
            return
        missing = [h for h in heads if h[0] not in pool.layers]
        heads = [h for h in heads if h[0] in pool.layers]
        if missing:
            self.property_note.setText(f"{len(missing)} heads are outside the indexed layers and were skipped.")
        self._submit("property", lambda s: s.property_nn(pool, heads, k, name),
                     lambda r: self._show_neighbours("property", self.property_grid, self.property_note, r))

    def run_image_nn(self) -> None:
        pool, l, h, k = self._pool, self.current_layer(), self.current_head(), self.image_k.value()
        if not self._pool_ready(self.image_note):
            return
        self._submit("image_nn", lambda s: s.image_nn(pool, l, h, k),
                     lambda r: self._show_neighbours("image_nn", self.image_grid, self.image_note, r))

    def run_text_nn(self) -> None:
        pool, l, h, k = self._pool, self.current_layer(), self.current_head(), self.text_k.value()
        text = self.textnn_text.text()
        if not self._pool_ready(self.text_note):
            return
        self._submit("text_nn", lambda s: s.text_nn(pool, text, l, h, k),
                     lambda r: self._show_neighbours("text_nn", self.text_grid, self.text_note, r))

    def _scope_args(self) -> tuple[Optional[int], Optional[int], Optional[str]]:
        scope = TOPIC_SCOPES[self.topic_scope.currentIndex()][1]
        if scope == "head":
            return self.current_layer(), self.current_head(), None
        if scope == "layer":
            return self.current_layer(), None, None
        return None, None, scope

    def _overlay(self, values: np.ndarray, smooth: bool) -> tuple[Optional[np.ndarray], np.ndarray]:
        base = self._base_rgb
        size = base.shape[:2] if base is not None else (224, 224)
        return base, an.upsample(values, size, smooth=smooth)

    def run_topic(self) -> None:
        text = self.topic_text.text()
        layer, head, agg = self._scope_args()
        smooth = self.topic_smooth.isChecked()

        def show(res: an.TopicMap) -> None:
            self._results["topic"] = res
            base, up = self._overlay(res.values, smooth)
            self.topic_view.set_map(base, up, res.vmin, res.vmax, f"“{res.text}” — {res.description}")
            self.topic_note.setText(
                f"Red = strong direct contribution to the match with “{res.text}”, blue = weak "
                f"(min {res.vmin:+.4f}, max {res.vmax:+.4f}; {res.values.shape[0]}x{res.values.shape[1]} patches"
                f"{', bilinear' if smooth else ', no blur'})."
            )

        self._submit("topic", lambda s: s.topic(text, layer, head, agg), show)

    def run_contrastive(self) -> None:
        t1, t2 = self.contrast_text1.text(), self.contrast_text2.text()
        agg = CONTRAST_SCOPES[self.contrast_scope.currentIndex()][1]

        def show(res: an.ContrastiveMaps) -> None:
            self._results["contrastive"] = res
            lim = res.limit if res.limit > 0 else 1.0
            base, up1 = self._overlay(res.first, False)
            _, up2 = self._overlay(res.second, False)
            self.contrast_view1.set_map(base, up1, -lim, lim, f"“{res.texts[0]}” vs “{res.texts[1]}”")
            self.contrast_view2.set_map(base, up2, -lim, lim, f"“{res.texts[1]}” vs “{res.texts[0]}”")
            self.contrast_note.setText(
                f"{res.description}; symmetric scale ±{res.limit:.4g}: red where the patch favours that map's text."
            )

        self._submit("contrastive", lambda s: s.contrastive(t1, t2, agg), show)

    # ================================================================== pool jobs
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an image folder for the pool")
        if folder:
            self.set_pool_folders([*self._folders, Path(folder)])

    def _choose_text_pool(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Text pool (one description per line)", "", "Text (*.txt)")
        if path:
            self.set_text_pool(path)

    def set_text_pool(self, path: Optional[str | Path]) -> None:
        from splice_desktop.core.interpret.text_pool import load_text_pool

        try:
            self._text_pool = load_text_pool(path) if path else None
        except Exception as exc:  # noqa: BLE001 - TextPoolError message is user-facing
            self.pool_note.setText(str(exc))
            return
        self._textspan = {}
        self._fill_head_combo()

    def build_index(self) -> None:
        if self._loaded is None or not self._folders or (self._pool_job is not None and self._pool_job.isRunning()):
            return
        if self._pool is None:
            self._open_pool()
        pool = self._pool
        if pool is None:
            return

        def work(ctx: Any) -> Any:
            return pool.update(progress=ctx.progress, cancel=ctx.cancel)

        def done(rep: Any) -> None:
            self._textspan = {}
            self._on_property_changed()
            self._update_pool_label()
            extra = f" {len(rep.failures)} files could not be read." if rep.failures else ""
            state = "Cancelled: kept" if rep.cancelled else "Index up to date:"
            self.pool_note.setText(
                f"{state} {len(pool)} images ({rep.added} new, {rep.changed} changed, {rep.reused} reused, "
                f"{rep.removed} removed).{extra} Neighbour results reflect only this pool."
            )
            self.index_finished.emit(rep)

        self._start_pool_job("index", work, done)

    def describe_heads(self) -> None:
        if self._pool is None or len(self._pool) < 2 or (self._pool_job is not None and self._pool_job.isRunning()):
            return
        from splice_desktop.core.interpret.text_pool import default_text_pool
        from splice_desktop.core.interpret.textspan import describe_heads

        pool, loaded = self._pool, self._loaded
        tpool = self._text_pool or default_text_pool()
        heads = [(l, h) for l in pool.layers for h in range(pool.num_heads)]

        def work(ctx: Any) -> Any:
            from splice_desktop.core.interpret.textspan import pool_text_embeddings

            ctx.progress(0, 0, f"Encoding {len(tpool)} pool texts (cached after the first time)…")
            pool_text_embeddings(loaded, tpool, progress=ctx.progress, cancel=ctx.cancel)
            return describe_heads(loaded, pool.head_matrix, heads, tpool, progress=ctx.progress, cancel=ctx.cancel)

        def done(res: Any) -> None:
            self._textspan = dict(res)
            self._fill_head_combo()
            self.pool_note.setText(
                f"TEXTSPAN described {len(res)} heads over {len(pool)} pool images with the text pool "
                f"'{Path(tpool.source).name}' ({len(tpool)} texts)."
                + (" Fewer than 1,000 images: descriptions are noisy." if len(pool) < 1000 else "")
            )
            self.describe_finished.emit(res)

        self._start_pool_job("textspan", work, done)

    def _start_pool_job(self, name: str, work: Callable[[Any], Any], done: Callable[[Any], None]) -> None:
        job = TaskThread(work, name=f"interpret-pool-{name}", parent=self)
        self._pool_job = job
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)

        def on_progress(d: int, t: int, msg: str) -> None:
            if t > 0:
                self.progress.setRange(0, t)
                self.progress.setValue(d)
            else:
                self.progress.setRange(0, 0)
            self.progress.setFormat(f"{msg} %v/%m" if t > 0 else msg)

        def finish() -> None:
            job.wait(2000)
            if self._pool_job is job:
                self._pool_job = None
            job.deleteLater()
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("")
            self.progress.setVisible(False)
            self._refresh_enabled()

        def ok(value: Any) -> None:
            try:
                done(value)
            except Exception as exc:  # noqa: BLE001
                self.pool_note.setText(f"{name} failed: {exc}")
            finally:
                finish()

        def failed(exc: Any) -> None:
            self.pool_note.setText(f"{name} failed: {exc}")
            finish()

        def cancelled() -> None:
            self.pool_note.setText(f"{name} cancelled.")
            if name == "index" and self._loaded is not None:
                self._open_pool()  # shows what was kept
            finish()

        job.progress.connect(on_progress)
        job.succeeded.connect(ok)
        job.failed.connect(failed)
        job.cancelled.connect(cancelled)
        job.start()
        self._refresh_enabled()

    def cancel_pool_job(self) -> None:
        job = self._pool_job
        if job is not None:
            job.cancel()
            if job.isRunning():
                job.wait(15000)

    # ================================================================== export
    def _export_dialog(self, tab: str, kind: str) -> None:
        filt = "PNG image (*.png)" if kind == "png" else "CSV table (*.csv)"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {tab} as {kind.upper()}", f"{tab}.{kind}", filt)
        if not path:
            return
        try:
            (self.export_png if kind == "png" else self.export_csv)(tab, path)
        except Exception as exc:  # noqa: BLE001 - reported next to the result
            self._job_failed(tab, exc)

    def export_png(self, tab: str, path: str | Path) -> Path:
        """Write the rendered map(s) or grid of a tab; contrastive writes both maps side by side."""
        from PySide6.QtGui import QImage, QPainter

        views = {"property": [self.property_grid], "topic": [self.topic_view],
                 "contrastive": [self.contrast_view1, self.contrast_view2], "image_nn": [self.image_grid],
                 "text_nn": [self.text_grid]}[tab]
        imgs = [v.rendered() for v in views]
        if any(i is None for i in imgs):
            raise ValueError("Nothing to export yet: run the analysis first.")
        w = sum(i.width() for i in imgs)
        h = max(i.height() for i in imgs)
        out = QImage(w, h, QImage.Format.Format_RGB888)
        out.fill(0xFFFFFF)
        p = QPainter(out)
        x = 0
        for i in imgs:
            p.drawImage(x, 0, i)
            x += i.width()
        p.end()
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp.png")
        if not out.save(str(tmp), "PNG"):
            raise OSError(f"Could not write {target}")
        tmp.replace(target)
        return target

    def export_csv(self, tab: str, path: str | Path) -> Path:
        if tab == "textspan":
            return self._export_textspan_csv(path)
        res = self._results.get(tab)
        if res is None:
            raise ValueError("Nothing to export yet: run the analysis first.")
        buf = io.StringIO()
        w = csv.writer(buf)
        if isinstance(res, an.Neighbours):
            w.writerow(["rank", "path", "score", "analysis", "pool_images_searched"])
            for rank, p, s in res.rows():
                w.writerow([rank, p, f"{s:.6g}", res.description, res.searched])
        elif isinstance(res, an.TopicMap):
            w.writerow(["row", "col", "score", "text", "scope"])
            for (r, c), v in np.ndenumerate(res.values):
                w.writerow([r, c, f"{v:.6g}", res.text, res.description])
        elif isinstance(res, an.ContrastiveMaps):
            w.writerow(["row", "col", "first_minus_second", "first_text", "second_text", "scope"])
            for (r, c), v in np.ndenumerate(res.first):
                w.writerow([r, c, f"{v:.6g}", res.texts[0], res.texts[1], res.description])
        return atomic_write_text(path, buf.getvalue())

    def _export_textspan_csv(self, path: str | Path) -> Path:
        if not self._textspan:
            raise ValueError("No head descriptions yet: run “Describe heads (TEXTSPAN)” first.")
        labels = self._label_map() or {}
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["layer", "head", "rank", "text", "explained_variance", "pool_images", "published_label_hint"])
        for (l, h), res in sorted(self._textspan.items()):
            for r, (t, e) in enumerate(zip(res.texts, res.explained), start=1):
                w.writerow([l, h, r, t, f"{e:.6g}", res.num_images, labels.get((l, h), "")])
        return atomic_write_text(path, buf.getvalue())

    # used by tests / screenshots
    def rendered_rgb(self, tab: str) -> Optional[np.ndarray]:
        view = {"topic": self.topic_view, "contrastive": self.contrast_view1, "property": self.property_grid,
                "image_nn": self.image_grid, "text_nn": self.text_grid}[tab]
        img = view.rendered()
        return rgb_from_qimage(img) if img is not None else None
