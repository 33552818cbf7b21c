"""Horizontal bar chart of a decomposition's active concepts (pyqtgraph BarGraphItem).

Largest weight on top, names on the y axis, values at the bar ends, a hover tooltip per bar (concept, weight,
rank) and a header with lambda, l0 and both cosines. Removed concepts stay visible as GREY bars at their solved
weight, suffixed "(removed)", so they keep their place and can be clicked to select (and restore) them.
At most ``max_bars`` rows are drawn; the rest are summarised as "+M more".

Export: PNG from ``QWidget.grab`` (header included) and SVG with ``QSvgGenerator`` + ``render`` because
pyqtgraph 0.14's SVGExporter crashes with Qt >= 6.11.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QEvent, QIODevice, QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QFontMetricsF, QPainter, QPalette
from PySide6.QtWidgets import QGraphicsItem, QLabel, QSizePolicy, QVBoxLayout, QWidget

from splice_desktop.core.cache import atomic_write_bytes

MAX_BARS = 30
ACTIVE_COLOR = QColor(59, 125, 216)
SCALED_COLOR = QColor(230, 140, 30)
REMOVED_COLOR = QColor(170, 170, 170)
EMPTY_TEXT = "No active concept at this λ (λ ≥ λmax?). Lower λ to see concepts."
BANNER_TEXT = "Tiny random demo model: these concepts and numbers are MEANINGLESS (no pretrained weights)."


@dataclass(frozen=True)
class ValueLabel:
    """One text drawn at data position (x, y): left-aligned at x, or centred on x when ``centred``."""

    x: float
    y: float
    text: str
    color: QColor
    centred: bool = False


class ValueLabels(QGraphicsItem):
    """Every value label of the chart (plus "+M more" and the empty-state text) painted by ONE graphics item.

    A pyqtgraph TextItem per label is a Python object that Qt calls back on every paint, bounds query, move and
    view change; each such call must win the GIL from the encoder threads, so 30 labels made one chart repaint
    wait tens of milliseconds while images were encoded. This item costs one Python call per paint. Text is drawn
    unscaled (device pixels) at the mapped data position, like TextItem.
    """

    PAD = 4.0  # QGraphicsTextItem's document margin: keeps the old look

    def __init__(self) -> None:
        super().__init__()
        self._labels: list[ValueLabel] = []
        self._rgba: list[int] = []
        self._rect = QRectF()
        self.font = QFont()

    def labels(self) -> list[ValueLabel]:
        return list(self._labels)

    def set_labels(self, labels: list[ValueLabel], rect: QRectF) -> None:
        """Replace the labels; ``rect`` (data coordinates) must cover the visible range they are drawn in."""
        if labels == self._labels and rect == self._rect:
            return
        self.prepareGeometryChange()
        self._labels = list(labels)
        self._rgba = [lab.color.rgba() for lab in self._labels]  # plain ints: compared without calling Qt
        self._rect = QRectF(rect)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return self._rect

    def paint(self, p: QPainter, _option: Any, _widget: Any = None) -> None:
        if not self._labels:
            return
        # Every Qt call from Python releases and re-takes the GIL, so positions are mapped with plain arithmetic
        # (the view transform only scales and translates) and the pen changes only when the colour does.
        tr = p.transform()
        sx, sy, ox, oy = tr.m11(), tr.m22(), tr.dx(), tr.dy()
        p.save()
        p.resetTransform()
        p.setFont(self.font)
        fm = QFontMetricsF(self.font)
        dy = (fm.ascent() - fm.descent()) / 2
        pen = None
        for lab, rgba in zip(self._labels, self._rgba):
            dx = -fm.horizontalAdvance(lab.text) / 2 if lab.centred else self.PAD
            if rgba != pen:
                pen = rgba
                p.setPen(lab.color)
            p.drawText(round(sx * lab.x + ox + dx), round(sy * lab.y + oy + dy), lab.text)
        p.restore()


@dataclass(frozen=True)
class BarRow:
    word: str
    weight: float  # weight shown (edited weight; solved weight for removed concepts)
    rank: int  # 1-based rank among shown rows
    status: str  # "active", "scaled" or "removed"
    scale: float = 1.0


class ConceptChart(QWidget):
    conceptClicked = Signal(str)

    def __init__(self, parent: QWidget | None = None, max_bars: int = MAX_BARS) -> None:
        super().__init__(parent)
        self.max_bars = max_bars
        self._rows: list[BarRow] = []
        self._hidden = 0
        self._decomposition: Any = None
        self._bar_items: dict[str, Any] = {}
        self._value_labels: Optional[ValueLabels] = None
        self._axis_width = 0

        self.banner = QLabel(BANNER_TEXT)
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background:#ffd54f; color:#000; padding:4px; font-weight:bold;")
        self.banner.setVisible(False)
        self.header = QLabel("No image selected")
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Room for the two-line header from the start: "Solving…" (one line) and the result (two) would otherwise
        # resize the plot twice per image, and every pyqtgraph relayout runs in Python on the GUI thread.
        self.header.setMinimumHeight(2 * self.header.fontMetrics().lineSpacing() + 2)

        self.plot_widget = pg.PlotWidget()
        self.plot_widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.plot_widget.setMinimumHeight(160)
        plot = self.plot_widget.getPlotItem()
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.showGrid(x=True, y=False, alpha=0.2)
        plot.setLabel("bottom", "weight")
        plot.getAxis("bottom").enableAutoSIPrefix(False)
        # Grid lines at major and minor ticks only: the third, nearly invisible level added ~40 alpha-blended
        # lines that made every chart repaint cost ~8 ms more (benchmarks/responsiveness.py).
        plot.getAxis("bottom").setStyle(maxTickLevel=1)
        self._plot = plot
        scene = self.plot_widget.scene()
        scene.sigMouseClicked.connect(self._on_scene_click)
        scene.sigMouseMoved.connect(self._on_scene_move)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.banner)
        lay.addWidget(self.header)
        lay.addWidget(self.plot_widget, 1)
        self._apply_palette()

    # ------------------------------------------------------------------ data
    def rows(self) -> list[BarRow]:
        """The rows currently drawn, top to bottom."""
        return list(self._rows)

    def hidden_count(self) -> int:
        return self._hidden

    def set_meaningless(self, meaningless: bool) -> None:
        self.banner.setVisible(bool(meaningless))

    def clear(self, message: str = "No image selected") -> None:
        self._decomposition = None
        self._rows = []
        self._hidden = 0
        self.header.setText(message)
        self._redraw()

    def show_decomposition(self, edited: Any, base: Any = None) -> None:
        """Draw ``edited`` (a Decomposition); removed concepts are taken from ``base`` (the unedited solve)."""
        self._decomposition = edited
        edits = getattr(edited, "edits", None)
        removed = set(getattr(edits, "removed", ()) or ())
        scales = dict(getattr(edits, "scales", {}) or {})
        entries: list[tuple[str, float, str, float]] = []
        for word, weight in zip(edited.words, edited.weights):
            if word in removed:
                continue
            scale = float(scales.get(word, 1.0))
            entries.append((word, float(weight), "scaled" if scale != 1.0 else "active", scale))
        if base is not None:
            for word, weight in zip(base.words, base.weights):
                if word in removed:
                    entries.append((word, float(weight), "removed", 0.0))
        entries.sort(key=lambda e: -e[1])
        shown = entries[: self.max_bars]
        self._hidden = len(entries) - len(shown)
        self._rows = [BarRow(w, x, i + 1, s, sc) for i, (w, x, s, sc) in enumerate(shown)]
        self.header.setText(self._header_html(edited, base))
        self._redraw()

    def _header_html(self, dec: Any, base: Any = None) -> str:
        mode = getattr(dec, "mode", "original")
        mode_text = {
            "original": "solved",
            "zero": "edited: weights zeroed/scaled (authors' intervention)",
            "resolve": "edited: re-solved without removed concepts",
        }.get(mode, mode)
        solved = f" (solved {base.l0})" if base is not None and base.l0 != dec.l0 else ""
        mean = "image mean: yes" if getattr(dec, "image_mean_present", False) else "image mean: <b>absent</b>"
        return (
            f"λ = <b>{dec.lam:.4g}</b> (max {dec.lambda_max:.4g}) &nbsp;·&nbsp; l0 = <b>{dec.l0}</b>{solved}"
            f" &nbsp;·&nbsp; cos(z, ẑ) = <b>{dec.cosine:.3f}</b>"
            f" &nbsp;·&nbsp; centred cos = <b>{dec.centred_cosine:.3f}</b>"
            f"<br><small>{mode_text} &nbsp;·&nbsp; {mean}</small>"
        )

    # ------------------------------------------------------------------ drawing
    def _ensure_items(self) -> None:
        """Create the plot items once; redraws only update them (adding/removing pyqtgraph items per slider
        tick cost ~100 ms per frame, updating them costs a few ms)."""
        if self._bar_items:
            return
        colors = {"active": ACTIVE_COLOR, "scaled": SCALED_COLOR, "removed": REMOVED_COLOR}
        for status, color in colors.items():  # one single-colour item per status: pyqtgraph's fast drawRects path
            item = pg.BarGraphItem(x0=[0.0], y=[0.0], height=0.72, width=[0.0], brush=pg.mkBrush(color),
                                   pen=pg.mkPen(None))
            item.setVisible(False)
            self._plot.addItem(item)
            self._bar_items[status] = item
        self._value_labels = ValueLabels()
        self._value_labels.font = QFont(self.font())
        self._plot.addItem(self._value_labels, ignoreBounds=True)

    def value_labels(self) -> list[ValueLabel]:
        """The texts drawn inside the plot (bar values, "+M more", the empty-state hint)."""
        return self._value_labels.labels() if self._value_labels is not None else []

    def _labels_for(self, ys: np.ndarray, text_color: QColor) -> list[ValueLabel]:
        out = []
        for y, row in zip(ys, self._rows):
            label = f"{row.weight:.3f}"
            if row.status == "scaled":
                label += f"  (x{row.scale:g})"
            elif row.status == "removed":
                label += "  (removed)"
            color = text_color if row.status != "removed" else REMOVED_COLOR
            out.append(ValueLabel(max(row.weight, 0.0), float(y), label, QColor(color)))
        if self._hidden:
            out.append(ValueLabel(0.0, -0.95, f"+{self._hidden} more", QColor(text_color)))
        return out

    def _redraw(self) -> None:
        self._ensure_items()
        plot = self._plot
        axis = plot.getAxis("left")
        text_color = self.palette().color(QPalette.ColorRole.WindowText)
        n = len(self._rows)
        ys = np.arange(n - 1, -1, -1, dtype=float)  # rank 1 at the top
        widths = np.array([max(r.weight, 0.0) for r in self._rows], dtype=float)
        statuses = np.array([r.status for r in self._rows], dtype=object)
        for status, item in self._bar_items.items():
            mask = statuses == status if n else np.zeros(0, dtype=bool)
            if mask.any():
                item.setOpts(x0=np.zeros(int(mask.sum())), y=ys[mask], width=widths[mask], height=0.72)
                item.setVisible(True)
            elif item.isVisible():
                item.setVisible(False)
        if n == 0:
            labels = []
            if self._decomposition is not None:
                labels = [ValueLabel(0.5, 0.0, EMPTY_TEXT, QColor(text_color), centred=True)]
            self._value_labels.set_labels(labels, QRectF(0.0, -0.5, 1.0, 1.0))
            axis.setTicks([[]])
            plot.vb.setRange(xRange=(0, 1), yRange=(-0.5, 0.5), padding=0)
            return
        ticks = [(float(y), self._tick_label(r)) for y, r in zip(ys, self._rows)]
        axis.setTicks([ticks])
        fm = QFontMetrics(axis.style.get("tickFont") or self.font())
        width = min(260, max(40, max(fm.horizontalAdvance(t) for _, t in ticks) + 14))
        width = min(260, -(-width // 24) * 24)  # in 24 px steps: most images keep the width, so no relayout
        if width != self._axis_width:
            axis.setWidth(width)
            self._axis_width = width
        xmax = float(widths.max()) if widths.size else 1.0
        x1 = (xmax if xmax > 0 else 1.0) * 1.35
        bottom = -1.4 if self._hidden else -0.6
        self._value_labels.set_labels(self._labels_for(ys, text_color), QRectF(0.0, bottom, x1, n - 0.4 - bottom))
        plot.vb.setRange(xRange=(0, x1), yRange=(bottom, n - 0.4), padding=0)

    @staticmethod
    def _tick_label(row: BarRow) -> str:
        name = row.word if len(row.word) <= 32 else row.word[:31] + "…"
        return f"{name} (removed)" if row.status == "removed" else name

    def _apply_palette(self) -> None:
        pal = self.palette()
        self.plot_widget.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.WindowText)
        for name in ("left", "bottom"):
            ax = self._plot.getAxis(name)
            ax.setPen(pg.mkPen(fg))
            ax.setTextPen(pg.mkPen(fg))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_palette()
            self._redraw()
        super().changeEvent(event)

    # ------------------------------------------------------------------ interaction
    def row_at_view(self, y: float) -> Optional[BarRow]:
        """The row whose bar covers view coordinate ``y`` (row i sits at y = n-1-i), or None."""
        n = len(self._rows)
        i = int(round(y))
        if n == 0 or abs(y - i) > 0.45 or not 0 <= i < n:
            return None
        return self._rows[n - 1 - i]

    def _row_at_scene(self, pos: QPointF) -> Optional[BarRow]:
        vb = self._plot.vb
        rect = self._plot.sceneBoundingRect()  # includes the axis with the names
        if not rect.contains(pos):
            return None
        return self.row_at_view(vb.mapSceneToView(pos).y())

    def row_scene_pos(self, word: str) -> Optional[QPointF]:
        """Scene position of the middle of a word's bar (for tests and keyboard focus)."""
        for idx, row in enumerate(self._rows):
            if row.word == word:
                y = float(len(self._rows) - 1 - idx)
                x = max(row.weight, 1e-9) / 2
                return self._plot.vb.mapViewToScene(QPointF(x, y))
        return None

    def click_row(self, word: str) -> None:
        """Programmatic click on a bar (keyboard users, tests)."""
        if any(r.word == word for r in self._rows):
            self.conceptClicked.emit(word)

    def _on_scene_click(self, event: Any) -> None:
        row = self._row_at_scene(event.scenePos())
        if row is not None:
            self.conceptClicked.emit(row.word)

    def _on_scene_move(self, pos: QPointF) -> None:
        row = self._row_at_scene(pos)
        self.plot_widget.setToolTip(self.tooltip_for(row) if row is not None else "")

    @staticmethod
    def tooltip_for(row: BarRow) -> str:
        extra = {"scaled": f"\nscaled x{row.scale:g}", "removed": "\nremoved (click, then Restore)"}.get(row.status, "")
        return f"{row.word}\nweight {row.weight:.4f}\nrank {row.rank}{extra}"

    # ------------------------------------------------------------------ export
    def _ready_for_render(self) -> None:
        if not self.isVisible() and (self.width() < 400 or self.height() < 300):
            self.resize(QSize(max(self.width(), 720), max(self.height(), 480)))
        if self.layout() is not None:
            self.layout().activate()

    def export_png(self, path: str | Path) -> Path:
        self._ready_for_render()
        pix = self.grab()
        if pix.isNull():
            raise RuntimeError("Could not render the chart to an image (null pixmap).")
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        pix.save(buf, "PNG")
        buf.close()
        return atomic_write_bytes(path, bytes(data.data()))

    def export_svg(self, path: str | Path) -> Path:
        from PySide6.QtSvg import QSvgGenerator

        self._ready_for_render()
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        gen = QSvgGenerator()
        gen.setOutputDevice(buf)
        gen.setSize(self.size())
        gen.setViewBox(QRect(0, 0, self.width(), self.height()))
        gen.setTitle("SpLiCE concept decomposition")
        painter = QPainter()
        if not painter.begin(gen):
            raise RuntimeError("Could not start the SVG painter.")
        try:
            self.render(painter, QPoint(0, 0))
        finally:
            painter.end()
        buf.close()
        return atomic_write_bytes(path, bytes(data.data()))
