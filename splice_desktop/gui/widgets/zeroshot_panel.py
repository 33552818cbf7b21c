"""Zero-shot panel: top-k classes for the original embedding, the recomposition and the edited recomposition.

The shift column (edited - recomposed, in percentage points) is drawn as a bar from the cell centre, green to the
right for up and red to the left for down, and its text carries a sign and an arrow (▲/▼) so it is readable
without colour. The class list is editable (ImageNet, a file, typed classes); the panel only *emits*
``classesChanged(ClassSet)`` - the AnalysisView rebuilds the ZeroShotHead off the GUI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QModelIndex, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QSpinBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ("Class", "Orig.", "Recomp.", "Edited", "Shift")
SHIFT_ROLE = Qt.ItemDataRole.UserRole + 1
UP = QColor(46, 160, 67)
DOWN = QColor(210, 50, 45)


def shift_text(shift: float) -> str:
    """Signed percentage points with an arrow: '+3.2 pp ▲', '-1.0 pp ▼', '0.0 pp'."""
    pp = 100.0 * shift
    if abs(pp) < 0.05:
        return "0.0 pp"
    return f"{pp:+.1f} pp {'▲' if pp > 0 else '▼'}"


class ShiftDelegate(QStyledItemDelegate):
    """Paints the shift as a centred bar (scaled to the largest |shift| in the table) under the signed text."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.scale = 1e-9

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        shift = index.data(SHIFT_ROLE)
        if shift is None:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget is not None else None
        text = opt.text
        opt.text = ""
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        full = QRectF(option.rect)
        text_w = min(78.0, full.width() * 0.5)
        text_rect = QRectF(full.left() + 2, full.top(), text_w, full.height())
        r = QRectF(full.left() + text_w + 6, full.top() + 4, max(full.width() - text_w - 10, 4), full.height() - 8)
        mid = r.center().x()
        frac = max(-1.0, min(1.0, float(shift) / self.scale)) if self.scale > 0 else 0.0
        w = frac * r.width() / 2
        painter.save()
        color = QColor(UP if shift > 0 else DOWN)
        painter.fillRect(QRectF(min(mid, mid + w), r.top(), abs(w), r.height()), color)
        painter.setPen(opt.palette.color(opt.palette.ColorRole.Mid))
        painter.drawLine(int(mid), int(r.top()) - 2, int(mid), int(r.bottom()) + 2)
        painter.setPen(opt.palette.color(opt.palette.ColorRole.Text))
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
        painter.restore()


class ClassTextDialog(QDialog):
    """Type or paste class names, one per line (or comma-separated)."""

    def __init__(self, parent: QWidget | None = None, text: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Zero-shot classes")
        self.edit = QPlainTextEdit(text)
        self.edit.setPlaceholderText("one class per line, e.g.\ncat\ndog\nfire truck")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Classes for zero-shot classification:"))
        lay.addWidget(self.edit)
        lay.addWidget(buttons)

    def text(self) -> str:
        return self.edit.toPlainText()


class ZeroShotPanel(QWidget):
    classesChanged = Signal(object)  # core.zeroshot.ClassSet
    kChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._comparison: Any = None
        self._typed_text = ""

        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 50)
        self.k_spin.setValue(5)
        self.k_spin.setPrefix("top ")
        self.k_spin.setToolTip("Number of classes shown (union of the top classes of the three columns)")
        self.k_spin.valueChanged.connect(self.kChanged.emit)
        self.classes_button = QToolButton()
        self.classes_button.setText("Classes…")
        self.classes_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.classes_button)
        menu.addAction("ImageNet (1000 classes)", self.use_imagenet)
        menu.addAction("Load from file…", self._choose_file)
        menu.addAction("Type classes…", self._type_classes)
        self.classes_button.setMenu(menu)
        self.source_label = QLabel("Classes: –")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.banner = QLabel("Tiny random demo model: these predictions are MEANINGLESS.")
        self.banner.setStyleSheet("background:#ffd54f; color:#000; padding:2px; font-weight:bold;")
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 10)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        fm = self.table.fontMetrics()
        for c in (1, 2, 3):  # fixed widths: ResizeToContents re-measures every row on every cell change
            hdr.setSectionResizeMode(c, QHeaderView.ResizeMode.Interactive)
            self.table.setColumnWidth(c, fm.horizontalAdvance(COLUMNS[c]) + 22)
        hdr.setSectionResizeMode(4, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(4, 120)
        # The class name is what people read first: never let it be squeezed to an ellipsis.
        hdr.setMinimumSectionSize(fm.horizontalAdvance("Recomp.") + 12)
        self.table.setMinimumWidth(fm.horizontalAdvance("hen of the woods") + sum(
            self.table.columnWidth(c) for c in (1, 2, 3, 4)) + 8)
        self.table.horizontalHeaderItem(4).setToolTip("Edited minus recomposed probability (percentage points)")
        for c, tip in ((1, "Probability for the original CLIP embedding"), (2, "Probability for the SpLiCE recomposition"), (3, "Probability for the edited recomposition")):
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self._delegate = ShiftDelegate(self.table)
        self.table.setItemDelegateForColumn(4, self._delegate)

        top = QHBoxLayout()
        top.addWidget(self.source_label, 1)
        top.addWidget(self.k_spin)
        top.addWidget(self.classes_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.banner)
        lay.addWidget(self.status)
        lay.addWidget(self.table, 1)

    # ------------------------------------------------------------------ display
    def k(self) -> int:
        return int(self.k_spin.value())

    def set_class_source(self, classes: Any) -> None:
        if classes is None:
            self.source_label.setText("Classes: –")
            return
        names = getattr(classes, "names", ())
        self.source_label.setText(f"Classes: {getattr(classes, 'source', '?')} ({len(names)})")

    def set_meaningless(self, meaningless: bool) -> None:
        self.banner.setVisible(bool(meaningless))

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color:#c62828;" if error else "")
        self.status.setText(text)

    def comparison(self) -> Any:
        return self._comparison

    def set_comparison(self, comparison: Any) -> None:
        """Show a ZeroShotComparison (rows of ClassShift) or clear with None."""
        self._comparison = comparison
        if getattr(comparison, "meaningless", False):
            self.set_meaningless(True)
        rows = list(getattr(comparison, "rows", ()) or ()) if comparison is not None else []
        t = self.table
        t.setUpdatesEnabled(False)
        t.setRowCount(len(rows))
        shifts = [abs(float(r.shift)) for r in rows if getattr(r, "p_edited", None) is not None]
        self._delegate.scale = max(shifts) if shifts and max(shifts) > 0 else 1e-9
        for i, row in enumerate(rows):
            p_edit = getattr(row, "p_edited", None)
            shift = getattr(row, "shift", None) if p_edit is not None else None  # no edit: no shift to show
            cells = (
                row.name,
                _pct(row.p_original),
                _pct(row.p_recomposed),
                _pct(p_edit),
                shift_text(shift) if shift is not None else "–",
            )
            for c, text in enumerate(cells):
                item = t.item(i, c)
                if item is None:
                    item = QTableWidgetItem()
                    t.setItem(i, c, item)
                item.setText(text)
                if c > 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            t.item(i, 4).setData(SHIFT_ROLE, None if shift is None else float(shift))
            t.item(i, 0).setToolTip(row.name)
        t.setUpdatesEnabled(True)

    def cell_text(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        return item.text() if item is not None else ""

    # ------------------------------------------------------------------ class lists
    def use_imagenet(self) -> Optional[Any]:
        from splice_desktop.core.zeroshot import imagenet_classes

        return self._emit_classes(imagenet_classes)

    def load_classes_from_file(self, path: str | Path) -> Optional[Any]:
        from splice_desktop.core.zeroshot import load_class_file

        return self._emit_classes(lambda: load_class_file(path))

    def set_classes_from_text(self, text: str) -> Optional[Any]:
        from splice_desktop.core.zeroshot import classes_from_text

        self._typed_text = text
        return self._emit_classes(lambda: classes_from_text(text))

    def _emit_classes(self, make: Any) -> Optional[Any]:
        try:
            classes = make()
        except Exception as exc:  # noqa: BLE001 - shown inline, never a crash
            self.set_status(f"Could not use these classes: {exc}", error=True)
            return None
        self.set_status(f"Encoding {len(classes.names)} class prompts…")
        self.set_class_source(classes)
        self.classesChanged.emit(classes)
        return classes

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Class list", "", "Text files (*.txt *.csv);;All files (*)")
        if path:
            self.load_classes_from_file(path)

    def _type_classes(self) -> None:
        dlg = ClassTextDialog(self, self._typed_text)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.set_classes_from_text(dlg.text())


def _pct(p: Optional[float]) -> str:
    return "–" if p is None else f"{100.0 * float(p):.1f}%"
