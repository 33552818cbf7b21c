"""The loaded images as a thumbnail grid: a list model with per-image status and a bounded thumbnail cache.

Thumbnails are decoded off the GUI thread (``workers.ThumbnailWorker``). Only ``THUMB_CACHE`` pixmaps are kept;
an item scrolled back into view asks for its thumbnail again, so memory stays flat for thousands of images.
Embeddings live in one growing float32 array (``EmbeddingStore``), not in per-item objects.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

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
            self._reserve(row + 1)
            self._rows[key] = row
        self._data[row] = vec

    def put_many(self, keys: list[str], vectors: "np.ndarray") -> None:
        """Append a batch with one numpy copy (the GUI thread stores each encoded batch at once, not per image)."""
        import numpy as np

        mat = np.asarray(vectors, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys for an array of shape {mat.shape}")
        fresh = len(set(keys)) == len(keys) and not any(k in self._rows for k in keys)
        if not keys or not fresh or self._data is None or mat.shape[1] != self.dim:
            for key, vec in zip(keys, mat):  # first batch, overwrites or a wrong size: the checked path
                self.put(key, vec)
            return
        start = len(self._rows)
        need = start + len(keys)
        self._reserve(need)
        self._data[start:need] = mat
        for i, key in enumerate(keys):
            self._rows[key] = start + i

    def _reserve(self, need: int) -> None:
        """Room for ``need`` rows, growing geometrically (amortised O(1) appends)."""
        import numpy as np

        if need > self._data.shape[0]:
            grown = np.zeros((max(16, 2 * self._data.shape[0], need), self.dim), dtype=np.float32)
            grown[: len(self._rows)] = self._data[: len(self._rows)]
            self._data = grown

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


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Sorted row numbers as (first, last) runs of consecutive rows."""
    runs: list[tuple[int, int]] = []
    for r in rows:
        if runs and r == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], r)
        else:
            runs.append((r, r))
    return runs


class ImageItem:
    __slots__ = ("path", "status", "reason")

    def __init__(self, path: str, status: str = PENDING, reason: str = "") -> None:
        self.path, self.status, self.reason = path, status, reason


class ImageListModel(QAbstractListModel):
    """Rows are image paths (absolute strings, also used as the image key everywhere)."""

    PathRole = Qt.ItemDataRole.UserRole + 1
    StatusRole = Qt.ItemDataRole.UserRole + 2

    thumbnailRequested = Signal(str)
    _STATUS_ROLES = [Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.ToolTipRole, StatusRole]

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

    # flags(): QAbstractListModel's C++ default (enabled, selectable, no children) is what this model needs; a
    # Python override would cost a GIL round trip per item on every layout and paint.

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
    def add_paths(self, paths: Iterable[str | Path], resolved: bool = False) -> list[str]:
        """Append new paths (duplicates ignored); returns the keys actually added.

        ``resolved=True`` says the paths are already absolute resolved keys (the folder scan resolves them on its
        worker thread): ``Path.resolve`` touches the file system for every path and must not run per image here.
        """
        new: list[str] = []
        seen: set[str] = set()
        for p in paths:
            key = str(p) if resolved else str(Path(p).resolve())
            if key in self._rows or key in seen:
                continue
            seen.add(key)
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
        self.set_status_many([path], status, reason)

    def set_status_many(self, paths: Iterable[str], status: str, reason: str = "") -> None:
        """Set many statuses with one ``dataChanged`` per run of adjacent rows.

        Every signal makes the view call back into Python (``rowCount``, ``data``), and each call must win the
        GIL from the encoder threads; one signal per image stalled the event loop while results streamed in.
        """
        rows = []
        for p in paths:
            row = self._rows.get(p)
            if row is not None:
                self._items[row].status, self._items[row].reason = status, reason
                rows.append(row)
        runs = _runs(sorted(set(rows)))
        if len(runs) > 8:  # scattered rows: one signal over the span is cheaper than many
            runs = [(runs[0][0], runs[-1][1])]
        for first, last in runs:
            self.dataChanged.emit(self.index(first), self.index(last), self._STATUS_ROLES)

    def status(self, path: str) -> Optional[str]:
        row = self._rows.get(path)
        return None if row is None else self._items[row].status

    def paths(self, status: Optional[str] = None) -> list[str]:
        return [it.path for it in self._items if status is None or it.status == status]

    def row_of(self, path: str) -> int:
        return self._rows.get(path, -1)

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
        # Lays out big folders incrementally: each item costs a call into the Python model, so a batch is kept
        # to what one event-loop turn absorbs while encoder threads compete for the GIL.
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(64)
        self.setToolTip("Drop image files or folders here, or use File > Open / Paste")
        self.selectionModel().currentChanged.connect(self._on_current)
        self._strip = False

    def dataChanged(self, top_left: QModelIndex, bottom_right: QModelIndex,  # noqa: N802 - Qt API
                    roles: Sequence[int] = ()) -> None:
        """Repaint only. Items have uniform, fixed sizes, so QListView's own handler has nothing to re-measure,
        yet in icon mode it walks every row of the range, asking the Python model for each index (a GIL round
        trip per row while encoder threads hold the GIL)."""
        if top_left == bottom_right:
            self.update(top_left)
        else:
            self.viewport().update()

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
