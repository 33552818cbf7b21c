"""The selected image shown large, scaled to fit with its aspect ratio kept.

Decoding happens off the GUI thread (a 12 MP JPEG takes a quarter of a second); the newest request wins and
stale results are dropped, so clicking quickly through a folder never queues decodes or freezes the window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget


class ImageView(QWidget):
    """Paints one QImage centred and scaled; shows a hint text when empty or a message when loading fails."""

    imageShown = Signal(str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageView")
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image: Optional[QImage] = None
        self._path: Optional[str] = None
        self._message = "Drop images or folders here\n(or File > Open, Ctrl+V to paste)"
        self._task: Any = None
        self._old_tasks: list[Any] = []
        self._scaled: Optional[QPixmap] = None  # the image scaled to the current size: paints are plain blits

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(420, 420)

    @property
    def path(self) -> Optional[str]:
        return self._path

    def image(self) -> Optional[QImage]:
        return self._image

    def set_path(self, path: Optional[str]) -> None:
        """Show ``path`` (decoded in the background); None clears the view."""
        from splice_desktop.gui import workers

        self._path = path
        if self._task is not None:
            self._task.cancel()
            self._old_tasks.append(self._task)
            self._task = None
        self._reap()
        if not path:
            self._image = None
            self._scaled = None
            self._message = "Drop images or folders here\n(or File > Open, Ctrl+V to paste)"
            self.update()
            return
        self._message = f"Loading {Path(path).name}…"
        target = self._target_size()
        task = workers.start_preview_loader(path, max_side=1600, parent=self, start=False,
                                            fit=(target.width(), target.height()))
        task.succeeded.connect(lambda preview, p=path: self._on_loaded(p, preview))
        task.failed.connect(lambda exc, p=path: self._on_failed(p, exc))
        self._task = task
        task.start()  # after connecting: a fast decode must not finish before anyone listens
        self.update()

    def _reap(self) -> None:
        self._old_tasks = [t for t in self._old_tasks if t.isRunning()]

    def _on_loaded(self, path: str, preview: Any) -> None:
        if path != self._path:
            return  # a newer request superseded this one
        self._image = preview.image
        self._scaled = None
        if preview.scaled is not None and not preview.scaled.isNull():  # scaled by the loader: paint is a blit
            self._scaled = QPixmap.fromImage(preview.scaled)
            self._scaled.setDevicePixelRatio(self.devicePixelRatioF())
        self._message = ""
        self.update()
        self.imageShown.emit(path)

    def _on_failed(self, path: str, exc: Any) -> None:
        if path != self._path:
            return
        self._image = None
        self._scaled = None
        self._message = f"Cannot show {Path(path).name}:\n{exc}"
        self.update()

    def shutdown(self, timeout_ms: int = 3000) -> None:
        from splice_desktop.gui.workers import stop_threads

        tasks = self._old_tasks + ([self._task] if self._task is not None else [])
        stop_threads(tasks, timeout_ms)
        self._task = None
        self._old_tasks = []

    def _target_size(self) -> QSize:
        """The widget's size in device pixels."""
        ratio = self.devicePixelRatioF()
        return QSize(max(1, int(self.width() * ratio)), max(1, int(self.height() * ratio)))

    def _scaled_pixmap(self) -> Optional[QPixmap]:
        """Smooth-scale once per image and widget size (a 1600 px smooth scale costs ~10 ms; a blit ~0). The
        loader already scales to the size at request time, so this only runs after a resize."""
        if self._image is None or self._image.isNull():
            return None
        ratio = self.devicePixelRatioF()
        size = self._image.size().scaled(self._target_size(), Qt.AspectRatioMode.KeepAspectRatio)
        if self._scaled is None or self._scaled.size() != size:
            img = self._image.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
            self._scaled = QPixmap.fromImage(img)
            self._scaled.setDevicePixelRatio(ratio)
        return self._scaled

    def paintEvent(self, _event: Any) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        pix = self._scaled_pixmap()
        if pix is not None:
            w = pix.width() / pix.devicePixelRatio()
            h = pix.height() / pix.devicePixelRatio()
            p.drawPixmap(QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h), pix, QRectF(pix.rect()))
        elif self._message:
            p.setPen(pal.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
            p.drawText(self.rect().adjusted(12, 12, -12, -12), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self._message)
        p.end()
