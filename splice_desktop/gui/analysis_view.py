"""The analysis view: lambda slider + concept chart + concept editor + zero-shot panel for one image.

State lives here and nowhere else: the current image (key, z), the global lambda, the per-image EditState and
the latest accepted SolveResult. Widgets emit requests; every change goes through the QUndoStack (undo.py) and
then into ``_request()``, which snapshots the state into a SolveRequest for the latest-request-wins worker
(solve_worker.py). Results carry a generation id and anything older than the newest request is dropped, so the
display always matches the newest state and never replays a backlog.

Threads are started lazily (first request) and stopped by ``shutdown()``; the main window calls it on close.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from splice_desktop.core.decompose import EditState
from splice_desktop.gui.solve_worker import (
    HeadRequest,
    HeadWorker,
    PathRequest,
    PathStore,
    PathWorker,
    SolveRequest,
    SolveResult,
    SolveWorker,
    start_worker,
    stop_worker,
)
from splice_desktop.gui.undo import (
    LambdaCommand,
    RemoveConceptsCommand,
    ResetEditsCommand,
    RestoreConceptsCommand,
    ScaleConceptCommand,
    SetModeCommand,
)
from splice_desktop.gui.widgets.concept_chart import ConceptChart
from splice_desktop.gui.widgets.concept_editor import ConceptEditor
from splice_desktop.gui.widgets.lambda_slider import LambdaSlider
from splice_desktop.gui.widgets.zeroshot_panel import ZeroShotPanel

DEFAULT_LAMBDA = 0.25  # the authors' typical value (about 9 concepts on their data)
# The background lasso path of an image starts this long after its first answer is shown. The path is a long
# Python/numpy loop that competes with the GUI thread for the GIL; starting it with the first chart paint (or for
# every image passed while clicking through) made the event loop stall. Cold solves answer meanwhile.
PATH_DELAY_MS = 150


class AnalysisView(QWidget):
    decompositionChanged = Signal(object)  # edited Decomposition currently shown, or None
    busyChanged = Signal(bool)
    statusMessage = Signal(str)  # short human-readable status (path timing, errors)

    def __init__(self, parent: QWidget | None = None, default_lambda: float = DEFAULT_LAMBDA) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self._decomposer: Any = None
        self._vocab_set: set[str] = set()
        self._head: Any = None
        self._loaded: Any = None
        self._meaningless = False
        self._key: Optional[str] = None
        self._z: Optional[np.ndarray] = None
        self._lambda = float(default_lambda)
        self._edits: dict[str, EditState] = {}
        self._gen = 0
        self._answered_gen = 0
        self._head_gen = 0
        self._head_busy = False
        self._busy = False
        self._result: Optional[SolveResult] = None
        self._range_of: Optional[tuple[str, int]] = None  # (image key, decomposer id) the slider range belongs to
        self.stale_results = 0  # results dropped because a newer request existed
        self.accepted_results = 0
        self._solver: Optional[SolveWorker] = None
        self._solve_thread: Any = None
        self._head_worker: Optional[HeadWorker] = None
        self._head_thread: Any = None
        self._path_store = PathStore()
        self._path_worker: Optional[PathWorker] = None
        self._path_thread: Any = None
        self._path_for: Optional[tuple[str, int]] = None  # (image key, decomposer id) whose path was requested
        self._path_timer = QTimer(self)
        self._path_timer.setSingleShot(True)
        self._path_timer.setInterval(PATH_DELAY_MS)
        self._path_timer.timeout.connect(self._request_path)
        self._shut = False

        self.slider = LambdaSlider()
        self.slider.set_value(self._lambda)
        self.chart = ConceptChart()
        self.editor = ConceptEditor()
        self.zeroshot_panel = ZeroShotPanel()

        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.editor)
        bottom.addWidget(self.zeroshot_panel)
        bottom.setStretchFactor(0, 1)
        bottom.setStretchFactor(1, 1)
        bottom.setChildrenCollapsible(False)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.chart)
        split.addWidget(bottom)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider)
        lay.addWidget(split, 1)

        self.slider.valueChanging.connect(self._on_lambda_live)
        self.slider.valueCommitted.connect(self._on_lambda_committed)
        self.chart.conceptClicked.connect(self._on_chart_click)
        self.editor.removeRequested.connect(self._on_remove)
        self.editor.restoreRequested.connect(self._on_restore)
        self.editor.scaleRequested.connect(self._on_scale)
        self.editor.modeRequested.connect(self._on_mode)
        self.editor.resetRequested.connect(self._on_reset)
        self.zeroshot_panel.kChanged.connect(lambda _k: self._request())
        self.zeroshot_panel.classesChanged.connect(self._on_classes)
        self._clear_display("No image selected")

    # ================================================================== public API (main window)
    def set_context(self, decomposer: Any, zeroshot: Any, meaningless: bool) -> None:
        """New concept bank / image mean / zero-shot head. Edits are kept (they name concepts by string)."""
        if decomposer is not self._decomposer:
            self._path_store.clear()  # paths belong to the old bank / image mean
        self._decomposer = decomposer
        self._vocab_set = set(getattr(decomposer, "words", ()) or ()) if decomposer is not None else set()
        self._head = zeroshot
        self._head_gen += 1  # a head given here supersedes any head still being built
        self._set_head_busy(False)
        if zeroshot is not None and getattr(zeroshot, "loaded", None) is not None:
            self._loaded = zeroshot.loaded
        self._meaningless = bool(meaningless)
        self.chart.set_meaningless(self._meaningless)
        self.editor.set_vocabulary(sorted(self._vocab_set))
        self.zeroshot_panel.set_class_source(getattr(zeroshot, "classes", None))
        self.zeroshot_panel.set_status("" if zeroshot is not None else "No zero-shot head (no model loaded).")
        self.zeroshot_panel.set_meaningless(self._meaningless)
        self._result = None
        if decomposer is None:
            self._clear_display("No concept bank loaded")
            return
        self._new_path_target()
        self._request()

    def set_model(self, loaded: Any) -> None:
        """The LoadedModel used to rebuild the zero-shot head when the class list changes (optional)."""
        self._loaded = loaded

    def show_image(self, key: str, z: Optional[np.ndarray]) -> None:
        """Show image ``key`` with unit embedding ``z``; ``None`` clears the view."""
        if z is None:
            self._path_timer.stop()
            self._key = None
            self._z = None
            self._result = None
            self._gen += 1  # any in-flight answer is now stale
            self._answered_gen = self._gen
            self._update_busy()
            self._clear_display("No image selected")
            return
        self._key = str(key)
        self._z = np.ascontiguousarray(np.asarray(z, dtype=np.float32).reshape(-1))
        self._result = None
        # The slider range (lambda_max, a pass over the whole concept matrix) comes with the worker's answer:
        # no numpy work on the GUI thread while images are clicked through or stream in.
        self.editor.set_state(None, self.edit_state(self._key))
        self.chart.clear("Solving…")
        self._new_path_target()
        self._request()

    def current_key(self) -> Optional[str]:
        return self._key

    def current_decomposition(self) -> Any:
        """The decomposition currently shown (edits applied), or None; matches the current image and lambda."""
        r = self._result
        if r is None or r.key != self._key:
            return None
        return r.edited

    def current_result(self) -> Optional[SolveResult]:
        return self._result

    def lambda_value(self) -> float:
        return self._lambda

    def set_lambda(self, lam: float) -> None:
        """Set lambda without an undo step (session restore, settings)."""
        self._apply_lambda(float(lam))

    def edit_state(self, key: str) -> EditState:
        return self._edits.get(key, EditState())

    def set_edit_state(self, key: str, state: EditState) -> None:
        """Replace an image's edits without an undo step (session restore)."""
        self._apply_edit_state(key, state)

    def export_chart_png(self, path: str | Path) -> Path:
        return self.chart.export_png(path)

    def export_chart_svg(self, path: str | Path) -> Path:
        return self.chart.export_svg(path)

    def is_busy(self) -> bool:
        return self._busy

    def shutdown(self) -> None:
        """Cancel work and join the worker threads; safe to call twice."""
        self._shut = True
        self._path_timer.stop()
        pairs = [(w, t) for w, t in ((self._solver, self._solve_thread), (self._path_worker, self._path_thread),
                                     (self._head_worker, self._head_thread)) if w is not None]
        for worker, _ in pairs:
            worker.stop()  # cancel everything first so the threads wind down in parallel
        for worker, thread in pairs:
            # A cold solve cannot be interrupted; at usual lambdas it takes well under a second.
            stop_worker(worker, thread, timeout_ms=60000)
        self._solver = self._solve_thread = None
        self._head_worker = self._head_thread = None
        self._path_worker = self._path_thread = None

    @property
    def solver(self) -> Optional[SolveWorker]:
        return self._solver

    # ================================================================== undo targets
    def _apply_edit_state(self, key: str, state: EditState) -> None:
        if state.is_empty and state.mode == "zero":
            self._edits.pop(key, None)
        else:
            self._edits[key] = state
        if key == self._key:
            base = self._result.base if self._result is not None and self._result.key == key else None
            self.editor.set_state(base, state)
            self._request()

    def _apply_lambda(self, lam: float) -> None:
        lam = max(0.0, float(lam))
        changed = lam != self._lambda
        self._lambda = lam
        if self.slider.value() != lam:
            self.slider.set_value(lam)
        if changed:
            self._request()

    # ================================================================== widget handlers
    def _on_lambda_live(self, lam: float) -> None:
        self._lambda = float(lam)
        self._request()

    def _on_lambda_committed(self, old: float, new: float, gesture: int) -> None:
        self.undo_stack.push(LambdaCommand(self, old, new, gesture))

    def _on_chart_click(self, word: str) -> None:
        self.editor.select_concept(word)

    def _on_remove(self, words: list) -> None:
        if self._key is None:
            return
        old = self.edit_state(self._key)
        add = [w for w in words if w not in old.removed]
        if add:
            new = EditState(removed=old.removed | set(add), scales=old.scales, mode=old.mode)
            self.undo_stack.push(RemoveConceptsCommand(self, self._key, old, new, add))

    def _on_restore(self, words: list) -> None:
        if self._key is None:
            return
        old = self.edit_state(self._key)
        back = [w for w in words if w in old.removed]
        if back:
            new = EditState(removed=old.removed - set(back), scales=old.scales, mode=old.mode)
            self.undo_stack.push(RestoreConceptsCommand(self, self._key, old, new, back))

    def _on_scale(self, word: str, scale: float) -> None:
        if self._key is None:
            return
        old = self.edit_state(self._key)
        scales = dict(old.scales)
        if scale == 1.0:
            scales.pop(word, None)
        else:
            scales[word] = float(scale)
        if scales != dict(old.scales):
            new = EditState(removed=old.removed, scales=scales, mode=old.mode)
            self.undo_stack.push(ScaleConceptCommand(self, self._key, old, new, word, scale))

    def _on_mode(self, mode: str) -> None:
        if self._key is None:
            self.editor.set_state(None, EditState())
            return
        old = self.edit_state(self._key)
        if mode != old.mode:
            new = EditState(removed=old.removed, scales=old.scales, mode=mode)
            self.undo_stack.push(SetModeCommand(self, self._key, old, new, mode))

    def _on_reset(self) -> None:
        if self._key is None:
            return
        old = self.edit_state(self._key)
        if not old.is_empty:
            self.undo_stack.push(ResetEditsCommand(self, self._key, old, EditState(mode=old.mode)))

    def _on_classes(self, classes: Any) -> None:
        loaded = self._loaded or getattr(self._head, "loaded", None)
        if loaded is None:
            self.zeroshot_panel.set_status("Load a model first: the class prompts need its text encoder.",
                                           error=True)
            return
        self._ensure_threads()
        self._head_gen += 1
        self._set_head_busy(True)
        self._head_worker.submit(HeadRequest(self._head_gen, loaded, classes))

    # ================================================================== worker plumbing
    def _ensure_threads(self) -> None:
        if self._shut:
            return
        if self._solver is None:
            self._solver = SolveWorker(self._path_store)
            self._solver.resultReady.connect(self._on_result)
            self._solver.failed.connect(self._on_failed)
            self._solve_thread = start_worker(self._solver, "splice-solve")
        if self._path_worker is None:
            self._path_worker = PathWorker(self._path_store)
            self._path_worker.pathStarted.connect(self._on_path_started)
            self._path_worker.pathReady.connect(self._on_path_ready)
            self._path_thread = start_worker(self._path_worker, "splice-lasso-path")
        if self._head_worker is None:
            self._head_worker = HeadWorker()
            self._head_worker.headReady.connect(self._on_head_ready)
            self._head_worker.failed.connect(self._on_head_failed)
            self._head_thread = start_worker(self._head_worker, "splice-zeroshot-head")

    def _sanitised_edits(self, key: str) -> EditState:
        """Drop edits naming concepts the current bank does not have (e.g. after a vocabulary change)."""
        st = self.edit_state(key)
        if not self._vocab_set or st.names() <= self._vocab_set:
            return st
        return EditState(
            removed=frozenset(w for w in st.removed if w in self._vocab_set),
            scales={w: s for w, s in st.scales.items() if w in self._vocab_set},
            mode=st.mode,
        )

    def _request(self) -> None:
        if self._shut or self._decomposer is None or self._z is None or self._key is None:
            return
        self._ensure_threads()
        self._gen += 1
        req = SolveRequest(
            generation=self._gen,
            key=self._key,
            z=self._z,
            lam=self._lambda,
            decomposer=self._decomposer,
            edits=self._sanitised_edits(self._key),
            head=self._head,
            k=self.zeroshot_panel.k(),
        )
        self._solver.submit(req)
        self._update_busy()

    def _new_path_target(self) -> None:
        """Another image or bank is shown: stop a path computed for the previous one now, and request this one's
        ``PATH_DELAY_MS`` after its first answer (``_schedule_path``)."""
        self._path_timer.stop()
        if (self._key, id(self._decomposer)) != self._path_for:
            self._path_for = None
            if self._path_worker is not None:
                self._path_worker.cancel_other(self._decomposer, self._key)

    def _schedule_path(self) -> None:
        if self._path_for != (self._key, id(self._decomposer)) and not self._path_timer.isActive():
            self._path_timer.start()

    def _request_path(self) -> None:
        """Start (or keep) the background path computation for the current image."""
        if self._shut or self._decomposer is None or self._z is None or self._key is None:
            return
        self._ensure_threads()
        self._path_for = (self._key, id(self._decomposer))
        self._path_worker.submit(PathRequest(self._key, self._z, self._decomposer))

    def _on_result(self, res: SolveResult) -> None:
        if res.generation != self._gen or res.key != self._key:
            self.stale_results += 1
            return
        self.accepted_results += 1
        self._answered_gen = res.generation
        self._result = res
        current = self.slider.lambda_max()
        range_of = (res.key, id(self._decomposer))
        if (range_of != self._range_of or res.lambda_max > current
                or abs(res.lambda_max - current) > 1e-6 * max(res.lambda_max, 1e-12)):
            # Set from the worker's answer (lambda_max is not computed on the GUI thread). Path (float64) and cold
            # (float32) lambda_max differ by ~1e-8: keeping the larger value guarantees the slider's top gives
            # l0 = 0 in both modes.
            self.slider.set_range(res.lambda_max)
            self._range_of = range_of
        self.slider.set_l0(res.base.l0)
        self.chart.show_decomposition(res.edited, res.base)
        self.editor.set_state(res.base, self.edit_state(res.key))
        self.zeroshot_panel.set_comparison(res.comparison)
        self._update_busy()
        self._schedule_path()
        self.decompositionChanged.emit(res.edited)

    def _on_failed(self, generation: int, message: str) -> None:
        if generation != self._gen:
            return
        self._answered_gen = generation
        self._result = None  # nothing valid is shown for this lambda / edit state
        self._update_busy()
        self.chart.clear("")
        self.chart.header.setText(f"<span style='color:#c62828'>Decomposition failed: {message}</span>")
        self.zeroshot_panel.set_comparison(None)
        self.slider.set_l0(None)
        self._schedule_path()  # the path does not depend on lambda: lookups still help other lambdas
        self.statusMessage.emit(f"Decomposition failed: {message}")
        self.decompositionChanged.emit(None)

    def _on_path_started(self, key: str) -> None:
        if key == self._key:
            self.statusMessage.emit("Computing the lasso path in the background (exact solves meanwhile)…")

    def _on_path_ready(self, key: str, lambda_max: float, lam_min: float, seconds: float) -> None:
        if key == self._key:
            self.statusMessage.emit(
                f"Lasso path down to λ = {lam_min:.3g} ready after {seconds:.2f} s; slider moves there are lookups."
            )

    def _on_head_ready(self, generation: int, head: Any) -> None:
        if generation != self._head_gen:
            return
        self._head = head
        self._set_head_busy(False)
        self.zeroshot_panel.set_status("")
        self.zeroshot_panel.set_class_source(getattr(head, "classes", None))
        self._request()

    def _on_head_failed(self, generation: int, message: str) -> None:
        if generation != self._head_gen:
            return
        self._set_head_busy(False)
        self.zeroshot_panel.set_status(f"Could not build the zero-shot classifier: {message}", error=True)

    def _set_head_busy(self, busy: bool) -> None:
        self._head_busy = busy
        self._update_busy()

    def _update_busy(self) -> None:
        busy = self._head_busy or (self._answered_gen != self._gen and self._z is not None
                                   and self._decomposer is not None)
        if busy != self._busy:
            self._busy = busy
            self.busyChanged.emit(busy)

    def _clear_display(self, message: str) -> None:
        self.chart.clear(message)
        self.editor.set_state(None, self.edit_state(self._key) if self._key else EditState())
        self.zeroshot_panel.set_comparison(None)
        self.slider.set_l0(None)
        self.decompositionChanged.emit(None)
