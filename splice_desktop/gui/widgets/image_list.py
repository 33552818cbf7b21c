"""The loaded images as a thumbnail grid: a list model with per-image status and a bounded thumbnail cache.

Thumbnails are decoded off the GUI thread (``workers.ThumbnailWorker``). Only ``THUMB_CACHE`` pixmaps are kept;
an item scrolled back into view asks for its thumbnail again, so memory stays flat for thousands of images.
Embeddings live in one growing float32 array (``EmbeddingStore``), not in per-item objects.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

if TYPE_CHECKING:  # numpy is imported lazily: it is not needed to show the window
    import numpy as np

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

THUMB_SIZE = 96
THUMB_CACHE = 400

PENDING, ENCODED, FAILED = "pending", "encoded", "failed"


class EmbeddingStore:
    """Unit embeddings of all loaded images in one float32 array that grows by doubling (compact, O(1) append)."""

    def __init__(self, dim: int = 0) -> None:
        self.dim = int(dim)
        self._data: Any = None  # (capacity, dim) float32, allocated on first put
        self._rows: dict[str, int] = {}

    def reset(self, dim: int) -> None:
        self.dim = int(dim)
        self._data = None
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def put(self, key: str, vector: "np.ndarray") -> None:
        import numpy as np

        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.dim == 0 or len(self._rows) == 0 and vec.shape[0] != self.dim:
            self.reset(vec.shape[0])
        if vec.shape[0] != self.dim:
            raise ValueError(f"embedding has {vec.shape[0]} dimensions, store holds {self.dim}")
        if self._data is None:
            self._data = np.zeros((0, self.dim), dtype=np.float32)
        row = self._rows.get(key)
        if row is None:
            row = len(self._rows)
            if row >= self._data.shape[0]:
                grown = np.zeros((max(16, 2 * self._data.shape[0]), self.dim), dtype=np.float32)
                grown[: self._data.shape[0]] = self._data
                self._data = grown
            self._rows[key] = row
        self._data[row] = vec

    def get(self, key: str) -> "Optional[np.ndarray]":
        row = self._rows.get(key)
        return None if row is None else self._data[row].copy()

    def matrix(self) -> "np.ndarray":
        """All stored embeddings, rows in insertion order (a view; do not modify)."""
        import numpy as np

        if self._data is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._data[: len(self._rows)]

    def keys(self) -> list[str]:
        return list(self._rows)

    def nbytes(self) -> int:
        return 0 if self._data is None else int(self._data.nbytes)


class ImageItem:
    __slots__ = ("path", "status", "reason")

    def __init__(self, path: str, status: str = PENDING, reason: str = "") -> None:
        self.path, self.status, self.reason = path, status, reason


class ImageListModel(QAbstractListModel):
    """Rows are image paths (absolute strings, also used as the image key everywhere)."""

    PathRole = Qt.ItemDataRole.UserRole + 1
    StatusRole = Qt.ItemDataRole.UserRole + 2

    thumbnailRequested = Signal(str)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._items: list[ImageItem] = []
        self._rows: dict[str, int] = {}
        self._thumbs: "OrderedDict[str, QPixmap]" = OrderedDict()
        self._requested: set[str] = set()
        self._broken: set[str] = set()
        self.thumb_cache_size = THUMB_CACHE
        self._placeholder = self._make_placeholder(QColor("#9a9a9a"))
        self._broken_icon = self._make_placeholder(QColor("#c0392b"))

    @staticmethod
    def _make_placeholder(color: QColor) -> QPixmap:
        pm = QPixmap(THUMB_SIZE, THUMB_SIZE * 3 // 4)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setPen(color)
        p.drawRect(2, 2, pm.width() - 5, pm.height() - 5)
        p.end()
        return pm

    # ---- Qt model API ---------------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._items)):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return Path(item.path).name
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(item.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{item.path}\n{item.status}"
            return tip + (f": {item.reason}" if item.reason else "")
        if role == Qt.ItemDataRole.ForegroundRole:
            if item.status == FAILED:
                return QColor("#c0392b")
            if item.status == PENDING:
                return QColor("#8a8a8a")
            return None
        if role == self.PathRole:
            return item.path
        if role == self.StatusRole:
            return item.status
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # ---- thumbnails -----------------------------------------------------------------------------------------
    def _thumbnail(self, path: str) -> QPixmap:
        pm = self._thumbs.get(path)
        if pm is not None:
            self._thumbs.move_to_end(path)
            return pm
        if path in self._broken:
            return self._broken_icon
        if path not in self._requested:
            self._requested.add(path)
            self.thumbnailRequested.emit(path)
        return self._placeholder

    def set_thumbnail(self, path: str, image: QImage) -> None:
        """Called on the GUI thread with a worker-made QImage; evicts the least recently shown pixmap."""
        self._requested.discard(path)
        row = self._rows.get(path)
        if row is None:
            return
        self._thumbs[path] = QPixmap.fromImage(image)
        self._thumbs.move_to_end(path)
        while len(self._thumbs) > self.thumb_cache_size:
            self._thumbs.popitem(last=False)
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def thumbnail_failed(self, path: str, reason: str) -> None:
        self._requested.discard(path)
        self._broken.add(path)
        row = self._rows.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def cached_thumbnails(self) -> int:
        return len(self._thumbs)

    # ---- items ----------------------------------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | Path]) -> list[str]:
        """Append new paths (duplicates ignored); returns the keys actually added."""
        new = []
        for p in paths:
            key = str(Path(p).resolve())
            if key in self._rows or key in new:
                continue
            new.append(key)
        if not new:
            return []
        first = len(self._items)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        for i, key in enumerate(new):
            self._rows[key] = first + i
            self._items.append(ImageItem(key))
        self.endInsertRows()
        return new

    def set_status(self, path: str, status: str, reason: str = "") -> None:
        row = self._rows.get(path)
        if row is None:
            return
        item = self._items[row]
        item.status, item.reason = status, reason
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.ToolTipRole, self.StatusRole])

    def set_status_many(self, paths: Iterable[str], status: str) -> None:
        rows = []
        for p in paths:
            row = self._rows.get(p)
            if row is not None:
                self._items[row].status, self._items[row].reason = status, ""
                rows.append(row)
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def status(self, path: str) -> Optional[str]:
        row = self._rows.get(path)
        return None if row is None else self._items[row].status

    def paths(self, status: Optional[str] = None) -> list[str]:
        return [it.path for it in self._items if status is None or it.status == status]

    def row_of(self, path: str) -> int:
        return self._rows.get(path, -1)

    def path_at(self, row: int) -> Optional[str]:
        return self._items[row].path if 0 <= row < len(self._items) else None

    def clear(self) -> None:
        self.beginResetModel()
        self._items.clear()
        self._rows.clear()
        self._thumbs.clear()
        self._requested.clear()
        self._broken.clear()
        self.endResetModel()


class ImageListView(QListView):
    """Icon-mode grid of thumbnails; emits ``imageSelected(path)`` (or "" when the selection is cleared)."""

    imageSelected = Signal(str)

    def __init__(self, model: ImageListModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageList")
        self.setModel(model)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.setGridSize(QSize(THUMB_SIZE + 16, THUMB_SIZE + 28))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setLayoutMode(QListView.LayoutMode.Batched)  # lays out big folders incrementally: no freeze
        self.setBatchSize(200)
        self.setToolTip("Drop image files or folders here, or use File > Open / Paste")
        self.selectionModel().currentChanged.connect(self._on_current)
        self._strip = False

    def set_strip(self, strip: bool) -> None:
        """One scrolling row (docked at the top/bottom edge) or a wrapping grid (docked at a side)."""
        self._strip = bool(strip)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(not strip)
        if strip:
            height = THUMB_SIZE + 28 + self.horizontalScrollBar().sizeHint().height() + 2 * self.frameWidth() + 4
            self.setMinimumWidth(0)
            self.setFixedHeight(height)
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        else:
            self.setMinimumHeight(0)
            self.setMaximumHeight(16777215)
            self.setMinimumWidth(2 * (THUMB_SIZE + 16) + 24)
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setViewMode(QListView.ViewMode.IconMode)  # re-applies the icon layout after the flow change
        self.setMovement(QListView.Movement.Static)

    @property
    def is_strip(self) -> bool:
        return self._strip

    def list_model(self) -> ImageListModel:
        return self.model()  # type: ignore[return-value]

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        path = current.data(ImageListModel.PathRole) if current.isValid() else None
        self.imageSelected.emit(path or "")

    def select_path(self, path: str) -> bool:
        row = self.list_model().row_of(path)
        if row < 0:
            return False
        idx = self.list_model().index(row)
        self.setCurrentIndex(idx)
        self.scrollTo(idx)
        return True

    def current_path(self) -> Optional[str]:
        idx = self.currentIndex()
        return idx.data(ImageListModel.PathRole) if idx.isValid() else None
