"""Concept editor: the solved concepts of the current image with remove / restore / rescale, a vocabulary search,
the intervention-mode switch and a reset.

The editor never changes state itself: it emits *requests* and the AnalysisView turns them into undo commands,
so every edit is undoable and the editor is redrawn from the single source of truth (``set_state``).

SpLiCE cannot "add" a concept without re-solving (the lasso decides the support), so the vocabulary search only
finds a concept: it selects it when active and otherwise reports its weight (0 when inactive at this lambda).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QStringListModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCompleter,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

MODE_LABELS = {
    "zero": "Zero the weight (authors' intervention)",
    "resolve": "Re-solve without it",
}
MODE_TIPS = {
    "zero": "Set the removed concept's weight to 0 and recompose, without re-solving (as in the SpLiCE paper).",
    "resolve": "Solve the lasso again at the same λ with the concept excluded: the other concepts compensate.",
}
COLUMNS = ("Concept", "Weight", "Scale", "Status")
GREY = QColor(150, 150, 150)


class ConceptTableModel(QAbstractTableModel):
    """Rows (word, solved weight, status) + scales. A model, not QTableWidget items: a reset is O(rows) and cells
    are formatted lazily for the visible rows only (QTableWidget with 300 rows took ~2 s per slider tick)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, float, str]] = []
        self.scales: dict[str, float] = {}
        self._grey = QBrush(GREY)
        self._strike = QFont()
        self._strike.setStrikeOut(True)

    def set_rows(self, rows: list[tuple[str, float, str]], scales: dict[str, float]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.scales = scales
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def text(self, row: int, col: int) -> str:
        word, weight, status = self.rows[row]
        return (word, f"{weight:.4f}", f"x{self.scales.get(word, 1.0):g}", status)[col]

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(r, c)
        removed = self.rows[r][2].startswith("removed")
        if role == Qt.ItemDataRole.TextAlignmentRole and c in (1, 2):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and removed:
            return self._grey
        if role == Qt.ItemDataRole.FontRole and removed and c == 0:
            return self._strike
        if role == Qt.ItemDataRole.ToolTipRole:
            word, weight, status = self.rows[r]
            return f"{word}: solved weight {weight:.4f}, {status}"
        return None


class _ConceptTable(QTableView):
    """A table whose Delete / Backspace remove the selection. An override of ``keyPressEvent`` rather than an
    event filter: a Python filter would be called (and take the GIL) for every event the table receives,
    paints included."""

    deletePressed = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.deletePressed.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class ConceptEditor(QWidget):
    removeRequested = Signal(list)
    restoreRequested = Signal(list)
    scaleRequested = Signal(str, float)
    modeRequested = Signal(str)
    resetRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base: Any = None
        self._edits: Any = None
        self._vocab: tuple[str, ...] = ()
        self._vocab_set: set[str] = set()
        self._rows: list[tuple[str, float, str]] = []  # (word, solved weight, status)

        # search
        self.search = QLineEdit()
        self.search.setPlaceholderText("Find a concept in the vocabulary…")
        self.search.setClearButtonEnabled(True)
        self._completer_model = QStringListModel()
        completer = QCompleter(self._completer_model, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setMaxVisibleItems(12)
        self.search.setCompleter(completer)
        completer.activated.connect(self.find)
        self.search.returnPressed.connect(lambda: self.find(self.search.text()))
        self.message = QLabel("")
        self.message.setWordWrap(True)

        # table
        self.model = ConceptTableModel(self)
        self.table = _ConceptTable()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        fm = self.table.fontMetrics()
        for c, sample in ((1, "0.0000"), (2, "x10.00"), (3, "scaled x1.5")):
            hdr.setSectionResizeMode(c, QHeaderView.ResizeMode.Interactive)  # fixed widths: no per-row measuring
            self.table.setColumnWidth(c, fm.horizontalAdvance(sample) + 18)
        # Concept names are the point of the table: keep room for a two-word concept.
        self.table.setMinimumWidth(fm.horizontalAdvance("electrical switch") + 24 + sum(
            self.table.columnWidth(c) for c in (1, 2, 3)))
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._on_selection())
        self.table.deletePressed.connect(self.remove_selected)

        # buttons and scale field
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected concepts (Delete)")
        self.remove_button.clicked.connect(self.remove_selected)
        self.restore_button = QPushButton("Restore")
        self.restore_button.clicked.connect(self.restore_selected)
        self.reset_button = QPushButton("Reset to solved")
        self.reset_button.setToolTip("Undo every edit of this image (itself undoable)")
        self.reset_button.clicked.connect(self.resetRequested.emit)
        self.scale_spin = QDoubleSpinBox()
        self.scale_spin.setRange(0.0, 10.0)
        self.scale_spin.setSingleStep(0.1)
        self.scale_spin.setDecimals(2)
        self.scale_spin.setValue(1.0)
        self.scale_spin.setKeyboardTracking(False)
        self.scale_spin.setPrefix("x")
        self.scale_spin.setToolTip("Multiply the selected concept's weight (1 = as solved)")
        self.scale_spin.valueChanged.connect(self._on_scale)

        # mode
        self.mode_group = QButtonGroup(self)
        self.mode_buttons: dict[str, QRadioButton] = {}
        box = QGroupBox("When a concept is removed")
        box.setFlat(True)
        box_lay = QVBoxLayout(box)
        box_lay.setContentsMargins(6, 2, 2, 2)
        box_lay.setSpacing(0)
        for mode, text in MODE_LABELS.items():
            rb = QRadioButton(text)
            rb.setToolTip(MODE_TIPS[mode])
            self.mode_buttons[mode] = rb
            self.mode_group.addButton(rb)
            box_lay.addWidget(rb)
            rb.toggled.connect(lambda checked, m=mode: checked and self._on_mode(m))
        self.mode_buttons["zero"].setChecked(True)

        row = QHBoxLayout()
        row.addWidget(self.remove_button)
        row.addWidget(self.restore_button)
        row.addStretch(1)
        row.addWidget(self.reset_button)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Scale selected:"))
        row2.addWidget(self.scale_spin)
        row2.addStretch(1)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.search)
        lay.addWidget(self.message)
        self.table.setMinimumHeight(120)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)
        lay.addLayout(row2)
        lay.addWidget(box)
        self._on_selection()

    # ------------------------------------------------------------------ state in
    def set_vocabulary(self, words: Sequence[str]) -> None:
        self._vocab = tuple(words)
        self._vocab_set = set(self._vocab)
        self._completer_model.setStringList(list(self._vocab))

    def set_state(self, base: Any, edits: Any) -> None:
        """Show ``base`` (unedited Decomposition or None) with ``edits`` (EditState) applied as statuses."""
        self._base = base
        self._edits = edits
        removed = set(getattr(edits, "removed", ()) or ())
        scales = dict(getattr(edits, "scales", {}) or {})
        rows: list[tuple[str, float, str]] = []
        seen: set[str] = set()
        if base is not None:
            for word, weight in zip(base.words, base.weights):
                rows.append((word, float(weight), self._status(word, removed, scales)))
                seen.add(word)
        # Edited concepts that are inactive at this lambda stay listed, so they can be restored / reset.
        for word in sorted((removed | set(scales)) - seen):
            rows.append((word, 0.0, self._status(word, removed, scales) + " (inactive)"))
        self._fill(rows, scales)
        mode = getattr(edits, "mode", "zero")
        rb = self.mode_buttons.get(mode)
        if rb is not None and not rb.isChecked():
            rb.blockSignals(True)
            rb.setChecked(True)
            rb.blockSignals(False)
        self.reset_button.setEnabled(edits is not None and not getattr(edits, "is_empty", True))

    @staticmethod
    def _status(word: str, removed: set[str], scales: dict[str, float]) -> str:
        if word in removed:
            return "removed"
        s = scales.get(word, 1.0)
        return f"scaled x{s:g}" if s != 1.0 else "active"

    def _fill(self, rows: list[tuple[str, float, str]], scales: dict[str, float]) -> None:
        selected = set(self.selected_concepts())
        self._rows = rows
        sm = self.table.selectionModel()
        sm.blockSignals(True)
        self.model.set_rows(rows, scales)
        if selected:
            sel = QItemSelection()
            last = self.model.columnCount() - 1
            for r, (word, _, _) in enumerate(rows):
                if word in selected:
                    sel.select(self.model.index(r, 0), self.model.index(r, last))
            sm.select(sel, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        sm.blockSignals(False)
        self.table.viewport().update()
        self._on_selection()

    def cell_text(self, row: int, col: int) -> str:
        return self.model.text(row, col)

    # ------------------------------------------------------------------ queries
    def concepts(self) -> list[str]:
        return [w for w, _, _ in self._rows]

    def status_of(self, word: str) -> Optional[str]:
        for w, _, s in self._rows:
            if w == word:
                return s
        return None

    def selected_concepts(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedIndexes()})
        return [self._rows[r][0] for r in rows if r < len(self._rows)]

    def select_concept(self, word: str) -> bool:
        """Select ``word``'s row (e.g. after a chart click); False when it is not listed."""
        for r, (w, _, _) in enumerate(self._rows):
            if w == word:
                self.table.selectRow(r)
                self.table.scrollTo(self.model.index(r, 0))
                return True
        return False

    # ------------------------------------------------------------------ actions
    def find(self, text: str) -> str:
        """Look ``text`` up in the vocabulary; select it if listed, else say why not. Returns the message shown."""
        word = text.strip()
        if not word:
            return self._say("")
        if word not in self._vocab_set and word.lower() in self._vocab_set:
            word = word.lower()
        if word not in self._vocab_set:
            n = len(self._vocab)
            return self._say(f"“{word}” is not in the vocabulary ({n} concepts).", error=True)
        if self.select_concept(word):
            weight = next(wt for w, wt, _ in self._rows if w == word)
            status = self.status_of(word)
            return self._say(f"“{word}”: solved weight {weight:.4f} ({status}).")
        lam = getattr(self._base, "lam", None)
        at = f" at λ = {lam:.4g}" if lam is not None else ""
        return self._say(
            f"“{word}” is in the vocabulary but inactive{at}: weight 0. Lower λ to let the solver use it "
            "(SpLiCE cannot add a concept without re-solving)."
        )

    def _say(self, text: str, error: bool = False) -> str:
        self.message.setStyleSheet("color:#c62828;" if error else "")
        self.message.setText(text)
        return text

    def remove_selected(self) -> None:
        words = [w for w in self.selected_concepts() if not (self.status_of(w) or "").startswith("removed")]
        if words:
            self.removeRequested.emit(words)

    def restore_selected(self) -> None:
        words = [w for w in self.selected_concepts() if (self.status_of(w) or "").startswith("removed")]
        if words:
            self.restoreRequested.emit(words)

    def _on_selection(self) -> None:
        words = self.selected_concepts()
        statuses = [(self.status_of(w) or "") for w in words]
        self.remove_button.setEnabled(any(not s.startswith("removed") for s in statuses))
        self.restore_button.setEnabled(any(s.startswith("removed") for s in statuses))
        self.scale_spin.setEnabled(len(words) == 1 and not statuses[0].startswith("removed"))
        scales = dict(getattr(self._edits, "scales", {}) or {})
        self.scale_spin.blockSignals(True)
        self.scale_spin.setValue(scales.get(words[0], 1.0) if len(words) == 1 else 1.0)
        self.scale_spin.blockSignals(False)

    def _on_scale(self, value: float) -> None:
        words = self.selected_concepts()
        if len(words) == 1:
            self.scaleRequested.emit(words[0], float(value))

    def _on_mode(self, mode: str) -> None:
        if getattr(self._edits, "mode", "zero") != mode:
            self.modeRequested.emit(mode)

    def mode(self) -> str:
        return next((m for m, rb in self.mode_buttons.items() if rb.isChecked()), "zero")
