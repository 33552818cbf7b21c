"""The main window: docks, menus, status bar, and the wiring between workers and panels.

No science happens here. The window owns the background tasks (pipeline loader, image encoder, thumbnails,
folder scans, batch export) and hands finished objects to the panels: ``AnalysisView`` (concept chart, slider,
editor, zero-shot) and ``InterpretPanel`` (CLIP-InterpreT heads). Everything slow runs off the GUI thread.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Optional

from PySide6.QtCore import QByteArray, QEvent, QMimeData, QObject, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QProgressBar, QSplitter,
    QTabWidget, QToolButton, QWidget,
)

from splice_desktop.gui.settings import AppSettings, PipelineConfig
from splice_desktop.gui.theme import ThemeManager, warning_color
from splice_desktop.gui.widgets.image_list import (
    ENCODED, FAILED, PENDING, EmbeddingStore, ImageListModel, ImageListView,
)
from splice_desktop.gui.widgets.image_view import ImageView

class _LazyWorkers:
    """``gui.workers`` imported on first use (after the first paint): it pulls in dataclasses and core modules
    that the window does not need to appear."""

    def __getattr__(self, name: str) -> Any:
        from splice_desktop.gui import workers as module

        return getattr(module, name)


workers: Any = _LazyWorkers()

APP_TITLE = "SpLiCE Desktop"
# Encoder results are applied on the GUI thread in chunks of at most RESULT_CHUNK images and for at most
# RESULT_SLICE_S per event-loop turn, RESULT_COALESCE_MS after the first of a burst (benchmarks/responsiveness.py).
RESULT_CHUNK = 64
RESULT_SLICE_S = 0.008
RESULT_COALESCE_MS = 15
SESSION_FILTER = "SpLiCE Desktop session (*.splice.json *.json)"


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class TaskProgress(QWidget):
    """Label + progress bar + Cancel button for one kind of background work, hidden when idle."""

    def __init__(self, name: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setFixedWidth(140)
        self.bar.setTextVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setObjectName(f"{name}Cancel")
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        self.hide()

    def show_progress(self, text: str, done: int, total: int) -> None:
        self.label.setText(text)
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        else:
            self.bar.setRange(0, 0)  # indeterminate
        self.show()


class MainWindow(QMainWindow):
    """See the module docstring. Signals exist mainly so tests and scripts can wait on real milestones."""

    pipelineReady = Signal(object)  # workers.PipelineState, after every successful (re)load
    pipelineFailed = Signal(object)  # the exception
    encodingFinished = Signal()  # the encoder went idle (finished or cancelled)
    imagesAdded = Signal(list)  # keys added to the list
    imageActivated = Signal(str)  # the selected image was handed to the panels (with its embedding if known)
    panelsReady = Signal()  # the analysis and CLIP-InterpreT panels exist (deferred after the first paint)

    def __init__(
        self,
        settings: Optional[AppSettings] = None,
        theme: Optional[ThemeManager] = None,
        config: Optional[PipelineConfig] = None,
        autoload: bool = True,
        lazy_panels: bool = False,
    ) -> None:
        super().__init__()
        # Qt calls back into Python (item models, paint hooks, slots) many times per frame and each call must win
        # the GIL from busy worker threads; a 1 ms switch interval (default 5 ms) bounds each wait, which keeps the
        # event loop responsive while images are encoded (benchmarks/responsiveness.py).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self.setObjectName("mainWindow")
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.settings = settings or AppSettings()
        self.theme = theme or ThemeManager(self)
        self.config: PipelineConfig = config or self.settings.pipeline()

        self.state: Optional[workers.PipelineState] = None
        self.loader: Optional[workers.TaskThread] = None
        self.encoder: Optional[workers.TaskThread] = None
        self._encoder_key: Optional[str] = None
        self._encode_started = 0.0
        self._encoded_key: Optional[str] = None
        self._aux_tasks: list[workers.TaskThread] = []
        self.failures: list[Any] = []
        self.embeddings = EmbeddingStore()
        self.analysis: Any = None
        self.interpret_panel: Any = None
        self._closing = False
        self._current: Optional[str] = None
        self._pending_session: Any = None
        self.missing_weights_dialog: Any = None
        self.preferences_dialog: Any = None
        self.failed_dialog: Any = None
        self.last_export: Optional[Path] = None
        self._loaded: Any = None
        self._interpret_image: Optional[str] = None
        self._pending_select: Optional[str] = None

        self._encode_counts = (0, 0)
        self._encoder_events: deque[tuple[Any, str, Any]] = deque()
        self._drain_scheduled = False
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(100)
        self._progress_timer.timeout.connect(self._refresh_encode_progress)
        self._build_central()
        self._build_status_bar()
        self._build_actions()
        self._build_menus()
        self.thumbnailer: Any = None  # started on the first thumbnail request
        self.image_model.thumbnailRequested.connect(self._request_thumbnail)
        self.theme.themeChanged.connect(self._on_theme_changed)
        self._restore_window()
        self._update_status_labels()
        if lazy_panels:
            # Fast start: paint the window first; only then start the loader thread (torch import) and build
            # the heavy panels (pyqtgraph, numpy), so nothing competes with the first paint.
            self._autoload = autoload
            self.installEventFilter(self)
        else:
            self._build_panels()
            if autoload:
                QTimer.singleShot(0, self.start_loading)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if obj is self and event.type() == QEvent.Type.Paint:
            self.removeEventFilter(self)
            QTimer.singleShot(0, self._build_panels)  # panels first: the loader's torch import contends for the GIL
            if self._autoload:
                QTimer.singleShot(0, self.start_loading)
        return False

    # ================================================================================================== layout
    def _request_thumbnail(self, path: str) -> None:
        if self._closing:
            return
        if self.thumbnailer is None:
            self.thumbnailer = workers.ThumbnailWorker(size=96, parent=self)
            self.thumbnailer.ready.connect(self.image_model.set_thumbnail)
            self.thumbnailer.failed.connect(self.image_model.thumbnail_failed)
            self.thumbnailer.start()
        self.thumbnailer.request(path)

    def _build_central(self) -> None:
        """Left dock: the selected image above the thumbnail grid. Centre: the analysis / heads tabs, which need
        most of the room (chart, editor and zero-shot table). Docked at the top or bottom, the dock turns into a
        filmstrip beside the image."""
        self.image_model = ImageListModel(self)
        self.list_view = ImageListView(self.image_model)
        self.list_view.imageSelected.connect(self._on_image_selected)
        self.image_view = ImageView()
        self.image_view.setMinimumSize(200, 150)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("imagesSplitter")
        self.splitter.addWidget(self.image_view)
        self.splitter.addWidget(self.list_view)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([300, 400])
        self.images_dock = QDockWidget("Images", self)
        self.images_dock.setObjectName("imagesDock")
        self.images_dock.setWidget(self.splitter)
        self.images_dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.images_dock)
        self.images_dock.dockLocationChanged.connect(self._on_images_dock_moved)  # _restore_window applies it

        self.tabs = QTabWidget()
        self.tabs.setObjectName("panels")
        self._analysis_placeholder = QLabel("Loading the analysis view…")
        self._analysis_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._interpret_placeholder = QLabel("Loading the CLIP-InterpreT panel…")
        self._interpret_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.tabs.addTab(self._analysis_placeholder, "Concepts (SpLiCE)")
        self.tabs.addTab(self._interpret_placeholder, "Heads (CLIP-InterpreT)")
        self.tabs.currentChanged.connect(lambda _i: self._sync_interpret_image())
        self.setCentralWidget(self.tabs)
        self.resizeDocks([self.images_dock], [3 * (96 + 16) + 30], Qt.Orientation.Horizontal)

    def _on_images_dock_moved(self, area: Qt.DockWidgetArea) -> None:
        A = Qt.DockWidgetArea
        strip = area in (A.BottomDockWidgetArea, A.TopDockWidgetArea)
        self.list_view.set_strip(strip)
        self.splitter.setOrientation(Qt.Orientation.Horizontal if strip else Qt.Orientation.Vertical)

    def _install_panel(self, index: int, placeholder: QLabel, title: str, what: str, create: Any) -> Any:
        """Build one deferred panel and put it in its placeholder's tab. If it cannot be built, the placeholder says
        why and None is returned: the rest of the app stays usable without that panel."""
        try:
            panel = create()
        except Exception as exc:  # noqa: BLE001 - any failure in a panel's construction is shown, not raised
            placeholder.setText(f"The {what} could not be created:\n{exc}")
            traceback.print_exc()
            return None
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, panel, title)
        return panel

    def _build_panels(self) -> None:
        """Create the heavy panels (pyqtgraph etc.). Deferred after show() at startup so the window appears fast."""
        if self.analysis is not None or self._closing:
            return

        def analysis_view() -> Any:
            from splice_desktop.gui.analysis_view import AnalysisView

            return AnalysisView()

        def interpret_panel() -> Any:
            from splice_desktop.gui.widgets.interpret_panel import InterpretPanel

            return InterpretPanel()

        self.analysis = self._install_panel(0, self._analysis_placeholder, "Concepts (SpLiCE)", "analysis view",
                                            analysis_view)
        if self.analysis is not None:
            self.tabs.setCurrentIndex(0)
            self.undo_action = self.analysis.undo_stack.createUndoAction(self, "&Undo")
            self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
            self.redo_action = self.analysis.undo_stack.createRedoAction(self, "&Redo")
            self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)
            self.edit_menu.insertAction(self._edit_sep, self.undo_action)
            self.edit_menu.insertAction(self._edit_sep, self.redo_action)
            self.analysis.decompositionChanged.connect(self._on_decomposition_changed)
            self.analysis.statusMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.interpret_panel = self._install_panel(1, self._interpret_placeholder, "Heads (CLIP-InterpreT)",
                                                   "CLIP-InterpreT panel", interpret_panel)
        if self.state is not None:
            self._push_context()
            if self.state.loaded is not None:
                if self.analysis is not None:
                    self.analysis.set_model(self.state.loaded)
                if self.interpret_panel is not None:
                    self.interpret_panel.set_model(self.state.loaded)
        saved = self.settings.lambda_value()
        if saved is not None and self.analysis is not None:
            try:
                self.analysis.set_lambda(saved)
            except Exception:  # noqa: BLE001 - a stale saved value must not break startup
                pass
        if self._current:
            self._activate(self._current)
        self.panelsReady.emit()

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.loader_progress = TaskProgress("loaderProgress")
        self.loader_progress.cancel_button.clicked.connect(self.cancel_loading, Qt.ConnectionType.DirectConnection)
        self.encode_progress = TaskProgress("encodeProgress")
        self.encode_progress.cancel_button.clicked.connect(self.cancel_encoding, Qt.ConnectionType.DirectConnection)
        self.skipped_button = QToolButton()
        self.skipped_button.setObjectName("skippedButton")
        self.skipped_button.setAutoRaise(True)
        self.skipped_button.clicked.connect(self.show_failures)
        self.skipped_button.hide()
        self.device_label = QLabel()
        self.model_label = QLabel()
        self.model_label.setObjectName("modelLabel")
        self.vocab_label = QLabel()
        self.mean_label = QLabel()
        # All permanent: QStatusBar hides normal widgets while a temporary message is shown, and progress, Cancel
        # and the skipped-files button must stay reachable. Messages use the space on the left.
        for w in (self.loader_progress, self.encode_progress, self.skipped_button,
                  self.device_label, self.model_label, self.vocab_label, self.mean_label):
            sb.addPermanentWidget(w)

    def _action(self, text: str, slot: Any, shortcut: Any = None, tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        act.triggered.connect(lambda _checked=False: slot())
        return act

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.open_files_action = self._action("Open &Files…", self.open_files_dialog, K.Open, "Add image files")
        self.open_folder_action = self._action("Open F&older…", self.open_folder_dialog, "Ctrl+Shift+O",
                                               "Add every image in a folder and its sub-folders")
        self.paste_action = self._action("&Paste Image", self.paste_from_clipboard, K.Paste,
                                         "Add an image or image files from the clipboard")
        self.paste_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.save_session_action = self._action("&Save Session…", self.save_session_dialog, K.Save)
        self.open_session_action = self._action("Open Sessio&n…", self.open_session_dialog, "Ctrl+Alt+O")
        self.export_csv_action = self._action("Export Decomposition as &CSV…", lambda: self.export_dialog("csv"),
                                              "Ctrl+E")
        self.export_json_action = self._action("Export Decomposition as &JSON…", lambda: self.export_dialog("json"))
        self.export_png_action = self._action("Export Chart as &PNG…", lambda: self.export_dialog("png"))
        self.export_svg_action = self._action("Export Chart as S&VG…", lambda: self.export_dialog("svg"))
        self.export_all_action = self._action("Export &All Images' Decompositions (CSV)…", self.export_all_dialog,
                                              "Ctrl+Shift+E")
        self.encode_action = self._action("&Encode Pending Images", self.start_encoding, "Ctrl+R",
                                          "Encode images that are not encoded yet (e.g. after Cancel)")
        self.recompute_mean_action = self._action("Compute Image &Mean from Loaded Images",
                                                  self.compute_mean_from_images)
        self.clear_action = self._action("C&lear Images", self.clear_images)
        self.quit_action = self._action("&Quit", self.close, K.Quit)
        self.preferences_action = self._action("&Preferences…", self.open_preferences, "Ctrl+,")
        self.about_action = self._action("&About SpLiCE Desktop", self.show_about)
        self.theme_group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for name, label in (("light", "&Light Theme"), ("dark", "&Dark Theme")):
            act = QAction(label, self, checkable=True)
            act.triggered.connect(lambda _c=False, n=name: self.set_theme(n))
            self.theme_group.addAction(act)
            self.theme_actions[name] = act
        self.theme_actions[self.theme.name].setChecked(True)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        fm.addActions([self.open_files_action, self.open_folder_action, self.paste_action])
        fm.addSeparator()
        fm.addActions([self.open_session_action, self.save_session_action])
        self.recent_menu = fm.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)  # filled when opened, not at startup
        fm.addSeparator()
        fm.addActions([self.export_csv_action, self.export_json_action, self.export_png_action,
                       self.export_svg_action, self.export_all_action])
        fm.addSeparator()
        fm.addAction(self.quit_action)
        self.edit_menu = mb.addMenu("&Edit")
        self._edit_sep = self.edit_menu.addSeparator()
        self.edit_menu.addAction(self.preferences_action)
        im = mb.addMenu("&Images")
        im.addActions([self.encode_action, self.recompute_mean_action, self.clear_action])
        vm = mb.addMenu("&View")
        vm.addActions(list(self.theme_actions.values()))
        vm.addSeparator()
        vm.addAction(self.images_dock.toggleViewAction())
        hm = mb.addMenu("&Help")
        hm.addAction(self.about_action)

    # ================================================================================================ pipeline
    def start_loading(self, config: Optional[PipelineConfig] = None) -> None:
        """(Re)load model / vocabulary / mean / zero-shot head in the background; reuses what did not change."""
        if self._closing:
            return
        if config is not None:
            self.config = config
        if self.loader is not None and self.loader.isRunning():
            self.loader.cancel()
            self._aux_tasks.append(self.loader)
        emb = self.embeddings.matrix().copy() if self.config.mean_from_images and len(self.embeddings) else None
        previous = self.state if self.state is not None and self.state.decomposer is not None else None
        self.loader = workers.start_pipeline_loader(self.config, previous=previous, image_embeddings=emb, parent=self,
                                                    start=False)
        loader = self.loader
        loader.progress.connect(lambda d, t, m, L=loader: self._on_loader_progress(L, d, t, m))
        loader.partial.connect(lambda st, L=loader: self._on_loader_partial(L, st))
        loader.succeeded.connect(lambda st, L=loader: self._on_loader_done(L, st))
        loader.failed.connect(lambda exc, L=loader: self._on_loader_failed(L, exc))
        loader.cancelled.connect(lambda L=loader: self._on_loader_cancelled(L))
        loader.start()  # only now: signals emitted before the connections above would be lost
        self.loader_progress.show_progress(f"Loading {self.config.model_name}…", 0, 0)
        self.statusBar().showMessage("Loading model in the background…")

    def cancel_loading(self) -> None:
        if self.loader is not None:
            self.loader.cancel()

    def _on_loader_progress(self, loader: Any, done: int, total: int, message: str) -> None:
        if loader is self.loader:
            self.loader_progress.show_progress(message or "Loading…", done, total)

    def _on_loader_partial(self, loader: Any, stage: Any) -> None:
        if loader is not self.loader:
            return
        st = stage.state
        if stage.stage == "model":
            self._on_model_ready(st)
        self._update_status_labels(st)

    def _on_model_ready(self, st: workers.PipelineState) -> None:
        key = st.loaded.key
        if key != self._encoded_key:
            # New weights: every embedding is stale. The per-model disk cache makes re-encoding cheap.
            if self.encoder is not None and self.encoder.isRunning():
                self.encoder.cancel()
                self._aux_tasks.append(self.encoder)
                self.encoder = None
                self.encode_progress.hide()
            self.embeddings = EmbeddingStore(st.loaded.embed_dim)
            self.image_model.set_status_many(self.image_model.paths(ENCODED), PENDING)
            self._encoded_key = key
        self._loaded = st.loaded
        if self.analysis is not None:
            self.analysis.set_model(st.loaded)
        if self.interpret_panel is not None:
            try:
                self.interpret_panel.set_model(st.loaded)
            except Exception:  # noqa: BLE001
                traceback.print_exc()
        self.start_encoding()

    def _on_loader_done(self, loader: Any, st: workers.PipelineState) -> None:
        if loader is not self.loader:
            return
        if st.loaded is not None and st.loaded.key != self._encoded_key:
            self._on_model_ready(st)  # normally done at the "model" stage; never skip it
        self.state = st
        self.loader = None
        self.loader_progress.hide()
        self._update_status_labels(st)
        msg = f"Ready: {st.loaded.spec.label}, {len(st.vocabulary)} concepts"
        if st.warnings:
            msg += " — " + "; ".join(w for w in st.warnings if w)
        self.statusBar().showMessage(msg, 10000)
        self._push_context()
        self.pipelineReady.emit(st)
        if self._pending_session is not None:
            self._apply_session_edits(self._pending_session)
            self._pending_session = None
        self.start_encoding()

    def _on_loader_failed(self, loader: Any, exc: BaseException) -> None:
        if loader is not self.loader:
            return
        self.loader = None
        self.loader_progress.hide()
        from splice_desktop.core.errors import WeightsUnavailableError

        self.pipelineFailed.emit(exc)
        if isinstance(exc, WeightsUnavailableError):
            self._show_missing_weights(str(exc))
            return
        self.statusBar().showMessage(f"Loading failed: {exc}", 20000)
        if not type(exc).__module__.startswith("splice_desktop"):  # not a typed user-facing error: keep the trace
            traceback.print_exception(type(exc), exc, exc.__traceback__)
        box = QMessageBox(QMessageBox.Icon.Warning, "Loading failed",
                          f"{type(exc).__name__}: {exc}\n\nFix it in Edit > Preferences; images stay browsable.",
                          QMessageBox.StandardButton.Ok, self)
        box.setObjectName("loadErrorBox")
        box.open()
        self.load_error_box = box

    def _on_loader_cancelled(self, loader: Any) -> None:
        if loader is not self.loader:
            return
        self.loader = None
        self.loader_progress.hide()
        self.statusBar().showMessage("Loading cancelled. Use Edit > Preferences > Apply to load again.", 10000)

    def _show_missing_weights(self, message: str) -> None:
        from splice_desktop.gui.dialogs.missing_weights import CHECKPOINT, TINY, MissingWeightsDialog

        dlg = MissingWeightsDialog(message, self)
        self.missing_weights_dialog = dlg

        def _done(_result: int) -> None:
            if dlg.choice == TINY:
                self.apply_config(self.config.with_tiny_model())
            elif dlg.choice == CHECKPOINT and dlg.checkpoint_path:
                self.apply_config(self.config.with_changes(checkpoint=dlg.checkpoint_path))
            else:
                self.statusBar().showMessage("No model loaded: images can be browsed but not decomposed.")
            self.missing_weights_dialog = None

        dlg.finished.connect(_done)
        dlg.open()

    def apply_config(self, cfg: PipelineConfig, persist: bool = True) -> None:
        """Use ``cfg`` from now on (saved to settings) and reload what changed."""
        if persist:
            self.settings.set_pipeline(cfg)
        self.start_loading(cfg)

    def compute_mean_from_images(self) -> None:
        if len(self.embeddings) == 0:
            self.statusBar().showMessage("Encode some images first; the mean is computed from their embeddings.")
            return
        self.apply_config(self.config.with_changes(mean_from_images=True, mean_path=None))

    def _push_context(self) -> None:
        if self.analysis is None or self.state is None:
            return
        st = self.state
        self.analysis.set_context(st.decomposer, st.zeroshot, st.meaningless)
        if self._current:
            self._activate(self._current)

    def _update_status_labels(self, st: Optional[workers.PipelineState] = None) -> None:
        st = st or self.state
        red = warning_color(self.theme.name)
        if st is None or st.loaded is None:
            self.device_label.setText(f"device: {self.config.device}")
            self.model_label.setText(f"model: {self.config.model_name} (not loaded)")
            self.model_label.setStyleSheet("")
        else:
            self.device_label.setText(f"device: {st.loaded.device}")
            if st.meaningless:
                self.model_label.setText("meaningless demo model")
                self.model_label.setToolTip(st.loaded.spec.label)
                self.model_label.setStyleSheet(f"color: {red}; font-weight: bold;")
            else:
                self.model_label.setText(f"model: {st.loaded.spec.label}")
                self.model_label.setToolTip("")
                self.model_label.setStyleSheet("")
        n = len(st.vocabulary) if st is not None and st.vocabulary is not None else None
        self.vocab_label.setText(f"vocab: {n}" if n is not None else "vocab: –")
        if st is not None and st.image_mean is not None:
            present = bool(getattr(st.image_mean, "present", False))
            self.mean_label.setText("image mean: present" if present else "image mean: absent")
            self.mean_label.setToolTip(str(getattr(st.image_mean, "source", "")))
        else:
            self.mean_label.setText("image mean: –")
        title = APP_TITLE
        if st is not None and st.meaningless:
            title += " — tiny demo model (results are meaningless)"
        self.setWindowTitle(title)

    # ================================================================================================== images
    def add_paths(self, paths: Iterable[str | Path]) -> None:
        """Add files and folders (recursively) in the background; thumbnails appear as soon as they are listed."""
        items = [str(p) for p in paths]
        if not items or self._closing:
            return

        def _collect(ctx: workers.TaskContext) -> Any:
            from splice_desktop.core.images import collect_image_files

            result = collect_image_files([Path(p) for p in items])
            # Resolve here, on the worker: Path.resolve touches the file system once per image.
            return result, [str(Path(f).resolve()) for f in result.files]

        task = workers.start_task(_collect, "collect", parent=self, start=False)
        task.succeeded.connect(self._on_collected)
        task.failed.connect(lambda exc: self.statusBar().showMessage(f"Could not list files: {exc}", 10000))
        self._aux_tasks.append(task)
        task.start()
        self.statusBar().showMessage(f"Listing {len(items)} item(s)…")

    def _on_collected(self, collected: Any) -> None:
        result, keys = collected
        skipped = list(getattr(result, "skipped", []))
        added = self.image_model.add_paths(keys, resolved=True)
        if skipped:
            self._add_failures(skipped)
        if added:
            self.statusBar().showMessage(f"Added {len(added)} image(s)", 5000)
            # Separate event-loop turns for starting the encoder and selecting the first image, so no single
            # turn does all of it (keeps the worst event-loop stall small).
            QTimer.singleShot(0, self.start_encoding)
            if self._pending_select in added:
                QTimer.singleShot(0, lambda p=self._pending_select: self.list_view.select_path(p))
                self._pending_select = None
            elif self.list_view.current_path() is None:
                first = added[0]
                QTimer.singleShot(0, lambda: self.list_view.current_path() is None and self.list_view.select_path(first))
            self.imagesAdded.emit(added)
        elif not skipped:
            self.statusBar().showMessage("No new images found", 5000)

    def _add_failures(self, failures: list[Any]) -> None:
        from splice_desktop.gui.dialogs.failed_files import failure_reason

        self.failures.extend(failures)
        by_reason: dict[str, list[str]] = {}
        for f in failures:
            path, reason = failure_reason(f)
            key = self._key_for(str(path)) if path else ""
            if key and self.image_model.row_of(key) >= 0:
                by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            self.image_model.set_status_many(keys, FAILED, reason)
        n = len(self.failures)
        self.skipped_button.setText(f"{n} file{'s' if n != 1 else ''} skipped")
        self.skipped_button.setToolTip("Show the skipped files and why")
        self.skipped_button.show()

    def show_failures(self) -> None:
        from splice_desktop.gui.dialogs.failed_files import FailedFilesDialog

        self.failed_dialog = FailedFilesDialog(list(self.failures), self)
        self.failed_dialog.open()

    def clear_images(self) -> None:
        if self.encoder is not None:  # detach it: results still in flight must not refill the cleared list
            self.encoder.cancel()
            self._aux_tasks.append(self.encoder)
            self.encoder = None
            self._progress_timer.stop()
            self.encode_progress.hide()
        self._encoder_events.clear()  # results in flight belong to the detached encoder
        self.image_model.clear()
        self.embeddings = EmbeddingStore(self.embeddings.dim)
        self.failures.clear()
        self.skipped_button.hide()
        self._current = None
        self.image_view.set_path(None)
        if self.analysis is not None:
            self.analysis.show_image("", None)
        if self.interpret_panel is not None:
            self.interpret_panel.set_image(None)

    # ---- encoding
    def start_encoding(self) -> None:
        """Encode every pending image (one encoder at a time; images added meanwhile are picked up afterwards)."""
        if self._closing or self.state is None and getattr(self, "_loaded", None) is None:
            return
        if self.encoder is not None and (self.encoder.isRunning() or self._encoder_events):
            return  # still running, or its last results are still being applied (then it restarts us)
        loaded = self.state.loaded if self.state is not None else self._loaded
        pending = self.image_model.paths(PENDING)
        if not pending:
            return
        self._encoder_key = loaded.key
        self._encode_started = time.perf_counter()
        self.encoder = workers.start_encoder(loaded, pending, batch_size=16, parent=self, start=False)
        enc = self.encoder
        enc.progress.connect(lambda d, t, m, E=enc: self._on_encode_progress(E, d, t))
        enc.partial.connect(lambda b, E=enc: self._queue_encoder_event(E, "batch", b))
        enc.succeeded.connect(lambda rep, E=enc: self._queue_encoder_event(E, "done", rep))
        enc.failed.connect(lambda exc, E=enc: self._queue_encoder_event(E, "failed", exc))
        enc.cancelled.connect(lambda E=enc: self._queue_encoder_event(E, "cancelled", None))
        enc.start()
        self.encode_progress.show_progress(f"Encoding 0/{len(pending)}", 0, len(pending))

    def cancel_encoding(self) -> None:
        if self.encoder is not None:
            self.encoder.cancel()

    def _on_encode_progress(self, enc: Any, done: int, total: int) -> None:
        """Record only; the bar is redrawn by a 10 Hz timer. Per-image repaints would compete with the workers
        for the GIL and stall the event loop (benchmarks/responsiveness.py)."""
        if enc is not self.encoder:
            return
        self._encode_counts = (done, total)
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _refresh_encode_progress(self) -> None:
        if self.encoder is None:
            self._progress_timer.stop()
            return
        done, total = self._encode_counts
        elapsed = time.perf_counter() - self._encode_started
        eta = (total - done) * elapsed / done if done > 0 else float("nan")
        self.encode_progress.show_progress(f"Encoding {done}/{total} · ETA {_fmt_eta(eta)}", done, total)

    # ---- encoder results: coalesced and applied in time slices
    def _queue_encoder_event(self, enc: Any, kind: str, payload: Any) -> None:
        """Queue an encoder signal; ``_drain_encoder_events`` applies the queue in order, a slice at a time.

        Batches stream in faster than one event-loop turn can absorb them (cache hits arrive hundreds at a time),
        so they are split into chunks and applied for at most ``RESULT_SLICE_S`` per turn. "done"/"failed"/
        "cancelled" stay behind the batches, so ``encodingFinished`` still means every result is applied.
        """
        if kind == "batch" and len(payload.paths) > RESULT_CHUNK:
            for i in range(0, len(payload.paths), RESULT_CHUNK):
                chunk = workers.EncodedBatch(payload.paths[i:i + RESULT_CHUNK],
                                             payload.embeddings[i:i + RESULT_CHUNK],
                                             payload.failures if i == 0 else [])
                self._encoder_events.append((enc, kind, chunk))
        else:
            self._encoder_events.append((enc, kind, payload))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            # A short delay coalesces the batches of one burst into one list update and one repaint.
            QTimer.singleShot(RESULT_COALESCE_MS, self._drain_encoder_events)

    def _drain_encoder_events(self) -> None:
        self._drain_scheduled = False
        deadline = time.perf_counter() + RESULT_SLICE_S
        while self._encoder_events:
            enc, kind, payload = self._encoder_events.popleft()
            if kind == "batch":
                batches, n = [payload], len(payload.paths)
                while (self._encoder_events and n < RESULT_CHUNK and self._encoder_events[0][1] == "batch"
                       and self._encoder_events[0][0] is enc):
                    batches.append(self._encoder_events.popleft()[2])
                    n += len(batches[-1].paths)
                self._apply_batches(enc, batches)
            elif kind == "done":
                self._on_encode_done(enc, payload)
            elif kind == "failed":
                self._on_encode_failed(enc, payload)
            else:
                self._on_encode_cancelled(enc)
            if time.perf_counter() > deadline:
                break
        if self._encoder_events and not self._drain_scheduled:
            self._drain_scheduled = True
            QTimer.singleShot(0, self._drain_encoder_events)  # let paints and input in, then continue

    def _key_for(self, path: str) -> str:
        """The list key of a path from a worker: workers get the keys, so resolving is only a fallback."""
        return path if self.image_model.row_of(path) >= 0 else str(Path(path).resolve())

    def _apply_batches(self, enc: Any, batches: list[Any]) -> None:
        """Store embeddings and mark rows encoded for a few batches at once (one list update, one repaint)."""
        if enc is not self.encoder or self._encoder_key != self._encoded_key:
            return  # results of a superseded model or a detached encoder
        import numpy as np

        keys = [self._key_for(str(p)) for b in batches for p in b.paths]
        if keys:
            self.embeddings.put_many(keys, np.concatenate([b.embeddings for b in batches if len(b.paths)]))
            self.image_model.set_status_many(keys, ENCODED)
        failures = [f for b in batches for f in b.failures]
        if failures:
            self._add_failures(failures)
        if self._current is not None and self._current in set(keys):
            self._activate(self._current)

    def _encoder_finished(self, enc: Any, message: str) -> None:
        if enc is not self.encoder:
            return
        self.encoder = None
        self._progress_timer.stop()
        self.encode_progress.hide()
        self.statusBar().showMessage(message, 8000)
        self.encodingFinished.emit()

    def _on_encode_done(self, enc: Any, report: Any) -> None:
        n = len(getattr(report, "results", []) or [])
        self._encoder_finished(enc, f"Encoded {n} image(s)")
        st = self.state
        if (enc is not None and self.config.mean_from_images and st is not None and self.loader is None
                and not getattr(st.image_mean, "present", False) and len(self.embeddings) > 0):
            self.start_loading()  # "mean from loaded images" was waiting for embeddings (model and bank reused)
        if enc is not None and not self._closing and self.image_model.paths(PENDING):
            QTimer.singleShot(0, self.start_encoding)  # images dropped while encoding

    def _on_encode_failed(self, enc: Any, exc: BaseException) -> None:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        self._encoder_finished(enc, f"Encoding failed: {type(exc).__name__}: {exc}")

    def _on_encode_cancelled(self, enc: Any) -> None:
        left = len(self.image_model.paths(PENDING))
        self._encoder_finished(enc, f"Encoding cancelled; {left} image(s) not encoded (Images > Encode Pending).")

    # ---- selection
    def _on_image_selected(self, path: str) -> None:
        self._current = path or None
        self._activate(self._current)

    def _activate(self, path: Optional[str]) -> None:
        if self.image_view.path != path:
            self.image_view.set_path(path)
        self._sync_interpret_image()
        if self.analysis is None:
            return
        z = self.embeddings.get(path) if path else None
        st = self.state
        if st is None or st.decomposer is None or st.loaded.key != self._encoded_key:
            z_show = None  # no decomposer yet, or embeddings of a new model while its concept bank still loads
        else:
            z_show = z
        self.analysis.show_image(path or "", z_show)
        self.imageActivated.emit(path or "")

    def _sync_interpret_image(self) -> None:
        """Hand the selected image to the CLIP-InterpreT panel only while its tab is shown: its forward pass and
        session setup are heavy, and clicking through images with the tab hidden must stay instant."""
        panel = self.interpret_panel
        if panel is None or self.tabs.currentWidget() is not panel:
            return
        if self._interpret_image != self._current:
            self._interpret_image = self._current
            try:
                panel.set_image(self._current)
            except Exception:  # noqa: BLE001
                traceback.print_exc()

    def select_image(self, path: str) -> bool:
        return self.list_view.select_path(str(Path(path).resolve()))

    def current_image(self) -> Optional[str]:
        return self._current

    def _on_decomposition_changed(self, dec: Any) -> None:
        if dec is None:
            return
        try:
            self.statusBar().showMessage(
                f"l0={dec.l0}  cos={dec.cosine:.3f}  centred cos={dec.centred_cosine:.3f}  λ={dec.lam:.4g}", 0
            )
        except Exception:  # noqa: BLE001 - status text only
            pass

    # ---- clipboard and drag-and-drop
    def paste_from_clipboard(self) -> None:
        self.paste_mime(QGuiApplication.clipboard().mimeData())

    def paste_mime(self, mime: Optional[QMimeData]) -> bool:
        """File urls -> add them; image data -> saved as a PNG under cache_dir("pasted") and added."""
        if mime is None:
            return False
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
        if files:
            self.add_paths(files)
            return True
        if mime.hasImage():
            image = mime.imageData()
            if isinstance(image, QImage) and not image.isNull():
                path = self.save_pasted_image(image)
                self.add_paths([path])
                return True
        self.statusBar().showMessage("The clipboard holds no image or image files.", 5000)
        return False

    @staticmethod
    def save_pasted_image(image: QImage) -> Path:
        from splice_desktop.core.cache import atomic_write_bytes, cache_dir, sha256_bytes
        from PySide6.QtCore import QBuffer, QIODevice

        buf = QBuffer()
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buf, "PNG")
        data = bytes(buf.data())
        path = cache_dir("pasted") / f"pasted-{time.strftime('%Y%m%d-%H%M%S')}-{sha256_bytes(data)[:10]}.png"
        atomic_write_bytes(path, data)
        return path

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        mime = event.mimeData()
        if (mime.hasUrls() and any(u.isLocalFile() for u in mime.urls())) or mime.hasImage():
            event.acceptProposedAction()
            self.statusBar().showMessage("Drop to add images (folders are searched recursively)", 3000)
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        if self.paste_mime(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    # ---- file dialogs
    def open_files_dialog(self) -> None:
        from splice_desktop.core.images import IMAGE_SUFFIXES

        pattern = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.last_directory(),
                                                f"Images ({pattern});;All files (*)")
        if files:
            self.settings.set_last_directory(Path(files[0]).parent)
            self.add_paths(files)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", self.settings.last_directory())
        if folder:
            self.settings.set_last_directory(folder)
            self.settings.add_recent_file(folder)
            self.add_paths([folder])

    # ================================================================================================ sessions
    def session_state(self) -> Any:
        from splice_desktop.core.session import SessionState

        cfg = self.config
        from splice_desktop.core.models import ModelSpec

        edits = {}
        if self.analysis is not None:
            for key in self.image_model.paths():
                state = self.analysis.edit_state(key)
                if state is not None and not state.is_empty:
                    edits[key] = state
        lam = self.analysis.lambda_value() if self.analysis is not None else (self.settings.lambda_value() or 0.25)
        s = SessionState(
            images=self.image_model.paths(),
            vocabulary_path=cfg.vocab_path,
            vocabulary_size=cfg.vocab_size,
            vocabulary_order=cfg.vocab_order,
            image_mean_path=cfg.mean_path,
            lam=float(lam if lam is not None else 0.25),
            edits=edits,
            current_image=self._current,
        )
        s.set_model_spec(workers.spec_for(cfg) if cfg.model_name else ModelSpec())
        return s

    def save_session(self, path: str | Path) -> Path:
        out = self.session_state().save(path)
        self.settings.add_recent_file(out)
        self.statusBar().showMessage(f"Session saved to {out}", 5000)
        return out

    def open_session(self, path: str | Path) -> Any:
        from splice_desktop.core.session import SessionState

        s = SessionState.load(path)
        self.settings.add_recent_file(path)
        cfg = self.config.with_changes(
            model_name=s.model_name, pretrained=s.model_pretrained, checkpoint=s.model_checkpoint,
            vocab_path=s.vocabulary_path, vocab_size=s.vocabulary_size, vocab_order=s.vocabulary_order,
            mean_path=s.image_mean_path, mean_from_images=False,
        )
        self.clear_images()
        self._pending_session = s
        if self.analysis is not None:
            self.analysis.set_lambda(s.lam)
        missing = s.missing_images()  # one existence check per image, on the GUI thread: not two
        if missing:
            self._add_failures([(p, "missing (listed in the session but not found)") for p in missing])
        gone = set(missing)
        self.add_paths([p for p in s.images if p not in gone])
        if cfg != self.config or self.state is None:
            self.apply_config(cfg)
        else:
            self._apply_session_edits(s)
            self._pending_session = None
        return s

    def _apply_session_edits(self, s: Any) -> None:
        if self.analysis is None:
            return
        for key, state in s.edits.items():
            try:
                self.analysis.set_edit_state(str(Path(key).resolve()), state)
            except Exception:  # noqa: BLE001 - one stale edit must not drop the session
                traceback.print_exc()
        self.analysis.set_lambda(s.lam)
        if s.current_image and not self.select_image(s.current_image):
            self._pending_select = str(Path(s.current_image).resolve())  # selected once its folder is listed

    def save_session_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save session", self.settings.last_directory(), SESSION_FILTER)
        if path:
            self._guarded(lambda: self.save_session(path), "Could not save the session")

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", self.settings.last_directory(), SESSION_FILTER)
        if path:
            self._guarded(lambda: self.open_session(path), "Could not open the session")

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        items = self.settings.recent_files()
        for p in items:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _c=False, p=p: self.open_recent(p))
        if not items:
            none = self.recent_menu.addAction("(none)")
            none.setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear", self.settings.clear_recent_files)

    def open_recent(self, path: str) -> None:
        p = Path(path)
        if not p.exists():
            self.statusBar().showMessage(f"{path} no longer exists", 5000)
            return
        if p.is_file() and p.suffix.lower() == ".json":
            self._guarded(lambda: self.open_session(p), "Could not open the session")
        else:
            self.add_paths([p])

    # ================================================================================================= exports
    def _export_meta(self) -> Any:
        from splice_desktop.core.export import ExportMeta

        st = self.state
        if st is None:
            return ExportMeta()
        return ExportMeta(
            model_label=st.loaded.spec.label, meaningless=st.meaningless,
            vocab_source=str(getattr(st.vocabulary, "source", "")), vocab_size=len(st.vocabulary),
            image_mean_source=str(getattr(st.image_mean, "source", "")) if st.image_mean is not None else "",
        )

    def export_current(self, path: str | Path, fmt: Optional[str] = None) -> Path:
        """Export the shown decomposition (csv/json) or chart (png/svg); the format follows the suffix."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if self.analysis is None:
            raise RuntimeError("The analysis view is not available.")
        if fmt in ("png", "svg"):
            (self.analysis.export_chart_png if fmt == "png" else self.analysis.export_chart_svg)(str(path))
        else:
            dec = self.analysis.current_decomposition()
            if dec is None or not self._current:
                raise RuntimeError("No decomposition is shown: select an encoded image first.")
            from splice_desktop.core.export import write_decomposition_csv, write_decomposition_json

            writer = write_decomposition_csv if fmt == "csv" else write_decomposition_json
            writer(path, [(self._current, dec)], self._export_meta())
        self.last_export = path
        self.statusBar().showMessage(f"Exported {path}", 5000)
        return path

    def export_dialog(self, fmt: str) -> None:
        filters = {"csv": "CSV (*.csv)", "json": "JSON (*.json)", "png": "PNG image (*.png)", "svg": "SVG (*.svg)"}
        base = Path(self._current).stem if self._current else "decomposition"
        suggestion = str(Path(self.settings.last_directory()) / f"{base}.{fmt}")
        path, _ = QFileDialog.getSaveFileName(self, f"Export {fmt.upper()}", suggestion, filters[fmt])
        if path:
            if not path.lower().endswith("." + fmt):
                path += "." + fmt
            self.settings.set_last_directory(Path(path).parent)
            self._guarded(lambda: self.export_current(path, fmt), "Export failed")

    def export_all(self, path: str | Path) -> workers.TaskThread:
        """Decompose every encoded image at the current lambda (with its edits) in the background, then write."""
        if self.state is None or self.state.decomposer is None:
            raise RuntimeError("The model is not loaded yet.")
        keys = [k for k in self.image_model.paths(ENCODED) if k in self.embeddings]
        if not keys:
            raise RuntimeError("No encoded images to export.")
        lam = float(self.analysis.lambda_value()) if self.analysis is not None else 0.25
        items = [(k, self.embeddings.get(k), self.analysis.edit_state(k) if self.analysis is not None else None)
                 for k in keys]
        decomposer, meta, out = self.state.decomposer, self._export_meta(), Path(path)

        def _run(ctx: workers.TaskContext) -> Path:
            from splice_desktop.core.export import write_decomposition_csv

            results = workers.decompose_all_task(ctx, decomposer, items, lam)
            ctx.check()  # a cancelled export writes nothing
            return write_decomposition_csv(out, results, meta)

        task = workers.start_task(_run, "export-all", parent=self, start=False)
        self._aux_tasks.append(task)
        task.progress.connect(lambda d, t, m: self.loader_progress.show_progress(m, d, t))
        self.loader_progress.cancel_button.clicked.connect(task.cancel, Qt.ConnectionType.DirectConnection)

        def _finish(msg: str) -> None:
            self.loader_progress.hide()
            try:
                self.loader_progress.cancel_button.clicked.disconnect(task.cancel)
            except (RuntimeError, TypeError):
                pass
            self.statusBar().showMessage(msg, 8000)

        task.succeeded.connect(lambda p: (setattr(self, "last_export", p), _finish(f"Exported {len(items)} images to {p}")))
        task.failed.connect(lambda exc: _finish(f"Export failed: {exc}"))
        task.cancelled.connect(lambda: _finish("Export cancelled; nothing written"))
        task.start()
        return task

    def export_all_dialog(self) -> None:
        suggestion = str(Path(self.settings.last_directory()) / "all_decompositions.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export all decompositions", suggestion, "CSV (*.csv)")
        if path:
            self._guarded(lambda: self.export_all(path), "Export failed")

    def _guarded(self, fn: Any, title: str) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - user-facing action: report, never crash
            box = QMessageBox(QMessageBox.Icon.Warning, title, str(exc), QMessageBox.StandardButton.Ok, self)
            box.open()
            self._last_error_box = box
            return None

    # ================================================================================================ dialogs
    def open_preferences(self) -> None:
        from splice_desktop.gui.dialogs.preferences import PreferencesDialog

        dlg = PreferencesDialog(self.config, self)
        dlg.applied.connect(self.apply_config)
        self.preferences_dialog = dlg
        dlg.open()

    def show_about(self) -> None:
        from splice_desktop.gui.dialogs.about import AboutDialog

        st = self.state
        label = st.loaded.spec.label if st is not None and st.loaded is not None else "none loaded"
        device = st.loaded.device if st is not None and st.loaded is not None else ""
        self.about_dialog = AboutDialog(label, device, bool(st and st.meaningless), self)
        self.about_dialog.open()

    # ================================================================================================== theme
    def set_theme(self, name: str) -> None:
        self.theme.apply(name)
        self.settings.set_theme(self.theme.name)

    def _on_theme_changed(self, name: str) -> None:
        if name in self.theme_actions:
            self.theme_actions[name].setChecked(True)
        self._update_status_labels()  # panels follow the palette themselves (PaletteChange)

    # ============================================================================================ persistence
    def _restore_window(self) -> None:
        geometry, state = self.settings.geometry(), self.settings.window_state()
        restored = False
        if isinstance(geometry, (QByteArray, bytes)) and geometry:
            restored = self.restoreGeometry(QByteArray(geometry))
            screen = QApplication.screenAt(self.geometry().center())
            if screen is None:  # saved on a monitor that is gone: do not open off-screen
                restored = False
        if not restored:
            self.resize(1280, 800)
        if isinstance(state, (QByteArray, bytes)) and state:
            self.restoreState(QByteArray(state))
        self._on_images_dock_moved(self.dockWidgetArea(self.images_dock))
        split = self.settings.store.value("window/splitter")
        if isinstance(split, (QByteArray, bytes)) and split:
            self.splitter.restoreState(QByteArray(split))

    def _save_window(self) -> None:
        self.settings.store.setValue("window/splitter", self.splitter.saveState())
        self.settings.save_window(self.saveGeometry(), self.saveState())
        self.settings.set_theme(self.theme.name)
        if self.analysis is not None:
            try:
                self.settings.set_lambda_value(self.analysis.lambda_value())
            except Exception:  # noqa: BLE001
                pass

    def all_threads(self) -> list[Any]:
        threads = [self.loader, self.encoder, self.thumbnailer] + self._aux_tasks
        return [t for t in threads if t is not None]

    def shutdown(self, timeout_ms: int = 8000) -> list[Any]:
        """Cancel every worker cooperatively and wait (bounded). Returns threads that did not stop."""
        self._closing = True
        stuck = workers.stop_threads(self.all_threads(), timeout_ms)
        self.image_view.shutdown()
        for panel in (self.analysis, self.interpret_panel):
            if panel is not None:
                try:
                    panel.shutdown()
                except Exception:  # noqa: BLE001 - keep closing the rest
                    traceback.print_exc()
        self._aux_tasks = [t for t in self._aux_tasks if t.isRunning()]
        return stuck

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        if not self._closing:
            self._save_window()
            stuck = self.shutdown()
            if stuck:
                names = ", ".join(t.objectName() for t in stuck)
                print(f"warning: threads still running at close: {names}")
        event.accept()
        super().closeEvent(event)
