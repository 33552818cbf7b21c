"""Background workers for the analysis view: latest-request-wins solving and zero-shot head rebuilding.

Why not a queue: a slider drag produces tens of positions per second; solving each in turn builds a backlog and
the chart lags behind the handle. Each worker instead holds ONE pending request in a mutex-protected slot. A
newer request overwrites the older one, so after any burst the worker computes only the newest state.

Requests are immutable snapshots (decomposer, head, embedding, lambda, edits, generation id), so the worker
never reads GUI state. Results carry the generation id and the view drops anything older than its latest request.

Three workers, each in its own QThread:
* SolveWorker answers (image, lambda, edits) requests. When the exact lasso path of the image is known it is a
  lookup; until then (and below the path's end) it is an exact cold solve, so a new image shows at once.
* PathWorker computes the path in the background, in stages (``PATH_STAGES``: first down to 0.2 lambda_max,
  which is quick and covers the usual range, then down to 0.02 lambda_max), into a shared PathStore. It is
  cancelled (CancelToken) as soon as another image or concept bank is requested, so clicking through images
  never waits on paths nobody looks at. Measured on 15k x 512 (2 cores): path to 0.2 lmax 0.07 s, to 0.02 lmax
  about 0.8 s, while a cold solve answers in milliseconds - hence the stages and the cold-solve fallback.
* HeadWorker builds a ZeroShotHead (text-encodes the class prompts).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QMutex, QMutexLocker, QObject, Qt, QThread, Signal, Slot

from splice_desktop.core.errors import CancelledError
from splice_desktop.core.progress import CancelToken


@dataclass(frozen=True, eq=False)
class SolveRequest:
    generation: int
    key: str
    z: np.ndarray
    lam: float
    decomposer: Any  # core.decompose.Decomposer
    edits: Any  # core.decompose.EditState
    head: Any = None  # core.zeroshot.ZeroShotHead | None
    k: int = 5


@dataclass(frozen=True, eq=False)
class SolveResult:
    generation: int
    key: str
    lam: float
    lambda_max: float
    base: Any  # Decomposition at lam, unedited
    edited: Any  # base with the request's edits applied (== base when there are none)
    comparison: Any = None  # ZeroShotComparison | None
    seconds: float = 0.0


@dataclass(frozen=True, eq=False)
class PathRequest:
    key: str
    z: np.ndarray
    decomposer: Any
    stages: tuple[float, ...] = ()


PATH_STAGES: tuple[float, ...] = (0.2, 0.02)  # lam_min_ratio of each background path stage
PATH_STORE_SIZE = 8


class PathStore:
    """Thread-safe LRU of lasso paths keyed by (decomposer identity, image key); shared by path and solve workers.

    Holds a strong reference to the decomposer in the key so ``id`` cannot be recycled while the entry lives.
    """

    def __init__(self, size: int = PATH_STORE_SIZE) -> None:
        self._mutex = QMutex()
        self._size = size
        self._items: "OrderedDict[tuple[int, str], tuple[Any, Any]]" = OrderedDict()

    def get(self, decomposer: Any, key: str) -> Any:
        with QMutexLocker(self._mutex):
            hit = self._items.get((id(decomposer), key))
            if hit is None or hit[0] is not decomposer:
                return None
            self._items.move_to_end((id(decomposer), key))
            return hit[1]

    def put(self, decomposer: Any, key: str, path: Any) -> None:
        with QMutexLocker(self._mutex):
            self._items[(id(decomposer), key)] = (decomposer, path)
            self._items.move_to_end((id(decomposer), key))
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with QMutexLocker(self._mutex):
            self._items.clear()

    def __len__(self) -> int:
        with QMutexLocker(self._mutex):
            return len(self._items)


def compute_stage(decomposer: Any, z: np.ndarray, lam_min_ratio: float, cancel: CancelToken) -> Any:
    """One exact path stage from lambda_max down to ``lam_min_ratio * lambda_max`` (module-level so tests can gate it)."""
    from splice_desktop.core.solvers import compute_path

    return compute_path(decomposer.matrix, decomposer.center(z), lam_min_ratio=lam_min_ratio, cancel=cancel)


@dataclass(frozen=True, eq=False)
class HeadRequest:
    generation: int
    loaded: Any  # core.models.LoadedModel
    classes: Any  # core.zeroshot.ClassSet
    extra: dict = field(default_factory=dict)


class LatestSlotWorker(QObject):
    """A QObject living in its own QThread that processes only the newest submitted request.

    ``submit`` may be called from any thread. It stores the request in the slot and, if no drain is scheduled,
    posts one queued wake-up to the worker thread; ``_drain`` then takes whatever is newest until the slot is empty.
    """

    busyChanged = Signal(bool)
    _wake = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._mutex = QMutex()
        self._pending: Any = None
        self._scheduled = False
        self._stopping = False
        self.processed = 0  # requests actually computed (tests compare it with the number submitted)
        self.submitted = 0
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)

    def submit(self, request: Any) -> None:
        with QMutexLocker(self._mutex):
            if self._stopping:
                return
            self._pending = request
            self.submitted += 1
            wake = not self._scheduled
            self._scheduled = True
        self._on_submit(request)
        if wake:
            self._wake.emit()

    def has_pending(self) -> bool:
        with QMutexLocker(self._mutex):
            return self._pending is not None

    def stop(self) -> None:
        """Drop the pending request and refuse new ones; called from the GUI thread before quitting the thread."""
        with QMutexLocker(self._mutex):
            self._stopping = True
            self._pending = None
        self._on_stop()

    def _on_submit(self, request: Any) -> None:  # GUI thread hook
        pass

    def _on_stop(self) -> None:  # GUI thread hook
        pass

    @Slot()
    def _drain(self) -> None:
        self.busyChanged.emit(True)
        try:
            while True:
                with QMutexLocker(self._mutex):
                    request = self._pending
                    self._pending = None
                    if request is None or self._stopping:
                        self._scheduled = False
                        return
                self.processed += 1
                self._process(request)
        finally:
            self.busyChanged.emit(False)

    def _process(self, request: Any) -> None:  # worker thread
        raise NotImplementedError


class SolveWorker(LatestSlotWorker):
    """Answers (image, lambda, edits) requests: a path lookup when the path is known, else an exact cold solve."""

    resultReady = Signal(object)  # SolveResult
    failed = Signal(int, str)  # generation, message

    def __init__(self, store: Optional[PathStore] = None) -> None:
        super().__init__()
        self.store = store if store is not None else PathStore()
        self.lookups = 0
        self.cold_solves = 0

    def _process(self, req: SolveRequest) -> None:
        t0 = time.perf_counter()
        dec = req.decomposer
        try:
            path = self.store.get(dec, req.key)
            if path is not None and req.lam >= float(getattr(path, "lam_min", 0.0)):
                base = dec.decompose(req.z, req.lam, path=path)
                self.lookups += 1
            else:  # no path yet, or below where it stops: exact active-set solve
                base = dec.decompose(req.z, req.lam)
                self.cold_solves += 1
            edits = req.edits
            edited = base if edits is None or edits.is_empty else dec.edit(req.z, base, edits)
            comparison = None
            if req.head is not None:
                edited_z = None if edited is base else edited.z_hat  # "edited" column shows "–" without edits
                comparison = req.head.compare(req.z, base.z_hat, edited_z, k=req.k)
        except Exception as exc:  # noqa: BLE001 - surfaced to the user, the thread must survive
            self.failed.emit(req.generation, f"{type(exc).__name__}: {exc}")
            return
        if self.has_pending():
            return  # latest request wins: a newer state is waiting, this answer is already stale
        self.resultReady.emit(
            SolveResult(
                generation=req.generation,
                key=req.key,
                lam=float(req.lam),
                lambda_max=float(base.lambda_max),
                base=base,
                edited=edited,
                comparison=comparison,
                seconds=time.perf_counter() - t0,
            )
        )


class PathWorker(LatestSlotWorker):
    """Computes an image's lasso path in stages into the PathStore; cancelled when another image is requested."""

    pathStarted = Signal(str)  # image key
    pathReady = Signal(str, float, float, float)  # image key, lambda_max, lam_min reached, seconds
    failed = Signal(str, str)  # image key, message

    def __init__(self, store: PathStore, stages: tuple[float, ...] = PATH_STAGES) -> None:
        super().__init__()
        self.store = store
        self.stages = tuple(stages)
        self._running: Optional[tuple[Any, str, CancelToken]] = None
        self.stages_done = 0
        self.cancelled = 0

    def _on_submit(self, request: PathRequest) -> None:
        self.cancel_other(request.decomposer, request.key)

    def cancel_other(self, decomposer: Any, key: Optional[str]) -> None:
        """Cancel a running path that is not for (decomposer, key); safe from any thread. Called at once when
        another image is shown, while that image's own path request waits for its first answer."""
        with QMutexLocker(self._mutex):
            running = self._running
        if running is not None and (running[0] is not decomposer or running[1] != key):
            running[2].cancel()

    def _on_stop(self) -> None:
        with QMutexLocker(self._mutex):
            running = self._running
        if running is not None:
            running[2].cancel()

    def _process(self, req: PathRequest) -> None:
        existing = self.store.get(req.decomposer, req.key)
        if existing is not None and getattr(existing, "stop_reason", "target") != "target":
            return  # the path already ends for good (active set reached d, or lambda_max = 0)
        stages = [r for r in (req.stages or self.stages)
                  if existing is None or r * float(existing.lambda_max) < float(existing.lam_min)]
        if not stages:
            return
        token = CancelToken()
        with QMutexLocker(self._mutex):
            self._running = (req.decomposer, req.key, token)
        t0 = time.perf_counter()
        self.pathStarted.emit(req.key)
        try:
            for ratio in stages:
                path = compute_stage(req.decomposer, req.z, ratio, token)
                self.store.put(req.decomposer, req.key, path)
                self.stages_done += 1
                self.pathReady.emit(req.key, float(path.lambda_max), float(getattr(path, "lam_min", 0.0)),
                                    time.perf_counter() - t0)
                if getattr(path, "stop_reason", "target") != "target" or self.has_pending():
                    return  # another image (or the same one again) is waiting
        except CancelledError:
            self.cancelled += 1
        except Exception as exc:  # noqa: BLE001 - the solve worker falls back to cold solves
            self.failed.emit(req.key, f"{type(exc).__name__}: {exc}")
        finally:
            with QMutexLocker(self._mutex):
                self._running = None


class HeadWorker(LatestSlotWorker):
    """Builds a ZeroShotHead and encodes its class prompts off the GUI thread; the newest class list wins and
    a build still running is cancelled when a newer list arrives."""

    headReady = Signal(int, object)  # generation, ZeroShotHead (text matrix ready)
    failed = Signal(int, str)

    def __init__(self) -> None:
        super().__init__()
        self._token: Optional[CancelToken] = None

    def _cancel_running(self) -> None:
        with QMutexLocker(self._mutex):
            token = self._token
        if token is not None:
            token.cancel()

    def _on_submit(self, request: HeadRequest) -> None:
        self._cancel_running()

    def _on_stop(self) -> None:
        self._cancel_running()

    def _process(self, req: HeadRequest) -> None:
        from splice_desktop.core.zeroshot import ZeroShotHead

        token = CancelToken()
        with QMutexLocker(self._mutex):
            self._token = token
        try:
            head = ZeroShotHead(req.loaded, req.classes, **req.extra)
            prepare = getattr(head, "prepare", None)
            if prepare is not None:
                prepare(cancel=token)  # the text encoding: the slow part
        except CancelledError:
            return
        except Exception as exc:  # noqa: BLE001
            self.failed.emit(req.generation, f"{type(exc).__name__}: {exc}")
            return
        finally:
            with QMutexLocker(self._mutex):
                self._token = None
        if not self.has_pending():
            self.headReady.emit(req.generation, head)


class _WorkerThread(QThread):
    """An event-loop thread at background priority, like every worker thread: the GUI thread must win the CPU."""

    def run(self) -> None:  # noqa: D401 - Qt API
        from splice_desktop.gui.workers import lower_current_thread_priority

        lower_current_thread_priority()
        self.exec()


def start_worker(worker: LatestSlotWorker, name: str) -> QThread:
    """Move ``worker`` to a new named QThread (background priority) and start it."""
    thread = _WorkerThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.start()
    return thread


def stop_worker(worker: LatestSlotWorker, thread: QThread, timeout_ms: int = 10000) -> bool:
    """Cancel, quit and join; True when the thread has stopped."""
    worker.stop()
    thread.quit()
    return bool(thread.wait(timeout_ms))
