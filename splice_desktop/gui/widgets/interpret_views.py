"""Display widgets of the CLIP-InterpreT panel: a heat-map overlay with a colour bar, and a neighbour grid.

Both render to a QImage first (what is painted is exactly what "Export PNG" writes). Colours are explicit:
blue = low, white = middle, red = high (warm = strong match), so the original app's inverted "blue = match"
rendering (a uint8 wrap) cannot come back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

# blue -> white -> red ("coolwarm"-like), 5 anchors, linearly interpolated into a 256-entry LUT
_ANCHORS = np.array(
    [[59, 76, 192], [141, 176, 254], [242, 242, 242], [244, 154, 123], [180, 4, 38]], dtype=np.float32
)


def colour_lut(n: int = 256) -> np.ndarray:
    x = np.linspace(0, len(_ANCHORS) - 1, n)
    i = np.minimum(x.astype(int), len(_ANCHORS) - 2)
    f = (x - i)[:, None]
    return (_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).astype(np.uint8)


LUT = colour_lut()


def to_rgb(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Map values to RGB uint8 through the LUT; values are clipped in float before indexing (no wrap-around)."""
    span = vmax - vmin
    if not np.isfinite(span) or span <= 0:
        norm = np.full(values.shape, 0.5, dtype=np.float32)
    else:
        norm = np.clip((values.astype(np.float32) - vmin) / span, 0.0, 1.0)
    idx = np.rint(norm * (len(LUT) - 1)).astype(np.intp)
    return LUT[idx]


def qimage_from_rgb(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def rgb_from_qimage(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return arr[:, : 3 * w].reshape(h, w, 3).copy()


class HeatMapView(QWidget):
    """Base image with a per-pixel colour overlay (alpha) and a labelled colour bar on the right."""

    BAR_W = 70

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(220, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._rendered: Optional[QImage] = None
        self.title = ""
        self.values: Optional[np.ndarray] = None
        self.vmin = 0.0
        self.vmax = 1.0

    def clear(self) -> None:
        self._rendered, self.values, self.title = None, None, ""
        self.update()

    def has_content(self) -> bool:
        return self._rendered is not None

    def set_map(
        self,
        base_rgb: Optional[np.ndarray],
        values: np.ndarray,
        vmin: float,
        vmax: float,
        title: str = "",
        alpha: float = 0.6,
    ) -> None:
        """``values`` has the base image's pixel size (already upsampled); ``base_rgb`` may be None (map only)."""
        self.values, self.vmin, self.vmax, self.title = values, float(vmin), float(vmax), title
        col = to_rgb(values, vmin, vmax).astype(np.float32)
        if base_rgb is not None and base_rgb.shape[:2] == values.shape:
            col = alpha * col + (1 - alpha) * base_rgb.astype(np.float32)
        self._rendered = self._compose(qimage_from_rgb(np.clip(col, 0, 255).astype(np.uint8)))
        self.update()

    def _compose(self, overlay: QImage) -> QImage:
        ow, oh = overlay.width(), overlay.height()
        scale = max(1.0, 320.0 / max(ow, oh))
        w, h = int(ow * scale), int(oh * scale)
        title_h = 22
        out = QImage(w + self.BAR_W + 22, h + title_h + 10, QImage.Format.Format_RGB888)  # room for end ticks
        out.fill(QColor(255, 255, 255))
        p = QPainter(out)
        try:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)  # no blur when enlarging
            p.drawImage(QRect(0, title_h, w, h), overlay)
            font = QFont()
            font.setPointSize(9)
            p.setFont(font)
            p.setPen(QPen(QColor(20, 20, 20)))
            p.drawText(QRect(2, 0, w + self.BAR_W, title_h), Qt.AlignmentFlag.AlignVCenter, self.title)
            bar_x, bar_w = w + 8, 14
            bar = np.repeat(LUT[::-1][:, None, :], bar_w, axis=1)
            p.drawImage(QRect(bar_x, title_h, bar_w, h), qimage_from_rgb(bar))
            p.drawRect(QRect(bar_x, title_h, bar_w, h))
            for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
                y = title_h + int((1 - frac) * (h - 1))
                val = self.vmin + frac * (self.vmax - self.vmin)
                p.drawLine(bar_x + bar_w, y, bar_x + bar_w + 3, y)
                p.drawText(QRect(bar_x + bar_w + 5, y - 8, 60, 16), Qt.AlignmentFlag.AlignVCenter, f"{val:+.3g}")
        finally:
            p.end()
        return out

    def rendered(self) -> Optional[QImage]:
        return self._rendered

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(420, 360)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        try:
            if self._rendered is None:
                p.setPen(self.palette().color(self.foregroundRole()))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No map yet")
                return
            img = self._rendered
            s = min(self.width() / img.width(), self.height() / img.height())
            w, h = int(img.width() * s), int(img.height() * s)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRect((self.width() - w) // 2, (self.height() - h) // 2, w, h), img)
        finally:
            p.end()


class NeighbourGrid(QWidget):
    """A row-wrapped grid of thumbnails with rank, score and file name under each."""

    CELL = 132

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(300, 170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._items: list[tuple[QImage, str, float]] = []
        self.caption = ""
        self._rendered: Optional[QImage] = None

    def set_items(self, items: Sequence[tuple[QImage, str, float]], caption: str = "") -> None:
        self._items = list(items)
        self.caption = caption
        self._rendered = self._render() if self._items else None
        self.update()

    def clear(self) -> None:
        self.set_items([], "")

    def count(self) -> int:
        return len(self._items)

    def _render(self, cols: Optional[int] = None) -> QImage:
        n = len(self._items)
        cols = cols or min(n, 4)
        rows = (n + cols - 1) // cols
        c = self.CELL
        cap_h = 20
        out = QImage(cols * c, rows * (c + 30) + cap_h, QImage.Format.Format_RGB888)
        out.fill(QColor(255, 255, 255))
        p = QPainter(out)
        try:
            font = QFont()
            font.setPointSize(8)
            p.setFont(font)
            p.setPen(QPen(QColor(20, 20, 20)))
            p.drawText(QRect(2, 0, cols * c, cap_h), Qt.AlignmentFlag.AlignVCenter, self.caption)
            for i, (thumb, name, score) in enumerate(self._items):
                r, k = divmod(i, cols)
                x, y = k * c, cap_h + r * (c + 30)
                if not thumb.isNull():
                    t = thumb.scaled(c - 8, c - 8, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
                    p.drawImage(x + (c - t.width()) // 2, y + 4 + (c - 8 - t.height()) // 2, t)
                p.drawText(QRect(x, y + c - 2, c, 14), Qt.AlignmentFlag.AlignHCenter, f"#{i + 1}  {score:+.4g}")
                p.drawText(QRect(x, y + c + 12, c, 14), Qt.AlignmentFlag.AlignHCenter,
                           p.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, c - 4))
        finally:
            p.end()
        return out

    def rendered(self) -> Optional[QImage]:
        return self._rendered

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        try:
            if self._rendered is None:
                p.setPen(self.palette().color(self.foregroundRole()))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No results yet")
                return
            img = self._rendered
            s = min(1.0, self.width() / img.width(), self.height() / img.height())
            w, h = int(img.width() * s), int(img.height() * s)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRect(0, 0, w, h), img)
        finally:
            p.end()


def load_thumbnail(path: Path, size: int = 128) -> QImage:
    """Thumbnail through the project's robust decoder; a null QImage when the file is unreadable."""
    try:
        from splice_desktop.core.images import make_thumbnail

        pil = make_thumbnail(path, size)
    except Exception:  # noqa: BLE001 - a missing thumbnail must not break a result grid
        return QImage()
    rgb = np.asarray(pil.convert("RGB"))
    return qimage_from_rgb(rgb)
