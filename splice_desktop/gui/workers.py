"""Background work for the main window: model/concept-bank loader, image encoder, thumbnails, large previews.

Every worker is a ``TaskThread`` (a QThread running one Python callable). The callable gets a ``progress``
function and a ``CancelToken``; results, partial results, errors and cancellation come back as queued signals,
so the GUI thread only ever receives finished Python objects. Cancellation is cooperative: ``cancel()`` only sets
a flag (safe from any thread), the core functions check it between batches.

torch and open_clip are imported inside the callables, i.e. on the worker thread, never at module import, so the
main window appears before any heavy import happens.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # numpy is imported inside functions: the window must show before any heavy import
    import numpy as np

from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from splice_desktop.core.errors import CancelledError
from splice_desktop.core.progress import CancelToken
from splice_desktop.gui.settings import PipelineConfig

_THREADS: "weakref.WeakSet[QThread]" = weakref.WeakSet()
_THREADS_LOCK = threading.Lock()

TaskFn = Callable[["TaskContext"], Any]


# Background threads run at a lower CPU priority than the GUI thread (Linux "nice"). Threads they create
# inherit it, including torch's intra-op pool (first created by the loader thread), so on a small CPU the event
# loop gets a core as soon as it needs one while encoding keeps the rest. 0 disables.
# Why 7 (benchmarks/responsiveness.py, 2 cores): at 5, with encoder, decoder, thumbnail, preview and solver threads
# busy, the GUI thread waited 10-20 ms at a time for a CPU (worst stalls 24-34 ms; 12-20 ms at 7). Much higher
# is worse under load from other processes: a worker holding the GIL then hardly gets a CPU to hand it back
# (priority inversion; worst stalls 39-55 ms at 10 with one busy process, 14-31 ms at 7).
WORKER_NICE = int(os.environ.get("SPLICE_DESKTOP_WORKER_NICE", "7"))


def lower_current_thread_priority(increment: int = WORKER_NICE) -> None:
    """Raise this OS thread's nice value (best effort; a no-op where unsupported)."""
    # Linux only: there a thread id is a valid PRIO_PROCESS target; elsewhere it could name another process.
    if increment <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except (OSError, AttributeError):
        pass


def running_threads() -> list[QThread]:
    """Every QThread started through this module that is still running (tests assert this is empty)."""
    out = []
    with _THREADS_LOCK:
        threads = list(_THREADS)
    for t in threads:
        try:
            if t.isRunning():
                out.append(t)
        except RuntimeError:  # the C++ side was deleted with its parent: it is not running
            continue
    return out


@dataclass
class TaskContext:
    """What a task callable receives: report progress, stream partial results, check cancellation."""

    cancel: CancelToken
    _thread: "TaskThread"

    def progress(self, done: int, total: int, message: str = "") -> None:
        self._thread.progress.emit(int(done), int(total), str(message))

    def partial(self, value: Any) -> None:
        self._thread.partial.emit(value)

    def check(self) -> None:
        self.cancel.raise_if_cancelled()


class TaskThread(QThread):
    """Runs ``fn(ctx)`` once on its own thread. Exactly one of succeeded / failed / cancelled is emitted.

    The QThread object itself lives in the GUI thread, so its signals reach GUI slots as queued calls.
    """

    progress = Signal(int, int, str)
    partial = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal()

    def __init__(self, fn: TaskFn, name: str = "task", parent: Any = None) -> None:
        super().__init__(parent)
        self._fn = fn
        self.name = name
        self.setObjectName(name)
        self.token = CancelToken()
        with _THREADS_LOCK:
            _THREADS.add(self)

    def cancel(self) -> None:
        """Request a cooperative stop; returns at once (safe from any thread)."""
        self.token.cancel()

    def run(self) -> None:  # noqa: D401 - Qt API
        lower_current_thread_priority()
        ctx = TaskContext(cancel=self.token, _thread=self)
        try:
            value = self._fn(ctx)
        except CancelledError:
            self.cancelled.emit()
            return
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI, never vanish
            if self.token.cancelled:
                self.cancelled.emit()
            else:
                self.failed.emit(exc)
            return
        if self.token.cancelled:
            self.cancelled.emit()
        else:
            self.succeeded.emit(value)

    def stop(self, timeout_ms: int = 5000) -> bool:
        """Cancel and wait (bounded). Returns True when the thread has finished."""
        self.cancel()
        if self.isRunning():
            return bool(self.wait(timeout_ms))
        return True


def start_task(fn: TaskFn, name: str, parent: Any = None, start: bool = True) -> TaskThread:
    """Create (and by default start) a task thread.

    Pass ``start=False`` when connecting slots afterwards: a queued signal emitted before a slot is connected is
    lost, and fast tasks (a cached model, a short file list) can finish before the caller's next line.
    """
    thread = TaskThread(fn, name=name, parent=parent)
    if start:
        thread.start()
    return thread


# ------------------------------------------------------------------------------------------------ pipeline


@dataclass
class PipelineState:
    """Everything loaded in the background for one PipelineConfig. Fields stay None when not (yet) available."""

    config: PipelineConfig
    loaded: Any = None  # core.models.LoadedModel
    vocabulary: Any = None  # core.vocab.Vocabulary
    bank: Any = None  # core.concepts.ConceptBank
    image_mean: Any = None  # core.image_mean.ImageMean
    decomposer: Any = None  # core.decompose.Decomposer
    zeroshot: Any = None  # core.zeroshot.ZeroShotHead
    warnings: list[str] = field(default_factory=list)

    @property
    def meaningless(self) -> bool:
        return bool(getattr(self.loaded, "meaningless", False))


@dataclass
class PipelineStage:
    """A partial result: ``stage`` names what just finished ("model", "concepts", "mean", "zeroshot")."""

    stage: str
    state: PipelineState


def spec_for(cfg: PipelineConfig) -> Any:
    from splice_desktop.core.models import TINY_MODEL, ModelSpec

    if cfg.model_name == TINY_MODEL:
        return ModelSpec.tiny()
    return ModelSpec(name=cfg.model_name, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint)


def load_pipeline(
    ctx: TaskContext,
    cfg: PipelineConfig,
    previous: Optional[PipelineState] = None,
    image_embeddings: "Optional[np.ndarray]" = None,
) -> PipelineState:
    """Load model, vocabulary, concept bank, image mean, decomposer and zero-shot head, reusing what is unchanged.

    ``previous`` is the state currently in use: parts whose config did not change are carried over (Apply in
    Preferences reloads only what changed). ``image_embeddings`` feeds "compute the mean from loaded images".
    Emits a PipelineStage partial after each step so the status bar updates as soon as the model is ready.
    """
    state = PipelineState(config=cfg)
    prev = previous
    same_model = prev is not None and prev.loaded is not None and prev.config.model_key() == cfg.model_key()
    same_vocab = same_model and prev.bank is not None and prev.config.vocab_key() == cfg.vocab_key()
    same_mean = (
        same_model and prev.image_mean is not None and prev.config.mean_key() == cfg.mean_key()
        and not cfg.mean_from_images
    )

    if same_model:
        state.loaded = prev.loaded
    else:
        ctx.progress(0, 0, f"Loading model {cfg.model_name}…")
        import torch  # noqa: F401 - first heavy import happens here, on the worker thread

        from splice_desktop.core.models import load_model

        ctx.check()
        state.loaded = load_model(spec_for(cfg), device=cfg.device)
        state.warnings.extend(getattr(state.loaded, "warnings", []) or [])
    ctx.check()
    ctx.partial(PipelineStage("model", state))

    if same_vocab:
        state.vocabulary, state.bank = prev.vocabulary, prev.bank
    else:
        from splice_desktop.core.concepts import build_concept_bank
        from splice_desktop.core.vocab import default_vocabulary_path, load_vocabulary

        path = cfg.vocab_path or str(default_vocabulary_path())
        ctx.progress(0, 0, f"Reading vocabulary {Path(path).name}…")
        state.vocabulary = load_vocabulary(path, size=cfg.vocab_size, order=cfg.vocab_order)
        ctx.check()

        def _bank_progress(done: int, total: int, message: str = "") -> None:
            ctx.progress(done, total, message or f"Encoding concepts {done}/{total}")

        state.bank = build_concept_bank(state.loaded, state.vocabulary, progress=_bank_progress, cancel=ctx.cancel)
    ctx.check()
    ctx.partial(PipelineStage("concepts", state))

    from splice_desktop.core.image_mean import ImageMean

    if same_mean:
        state.image_mean = prev.image_mean
    elif cfg.mean_from_images:
        from splice_desktop.core.image_mean import compute_image_mean

        if image_embeddings is not None and len(image_embeddings) > 0:
            state.image_mean = compute_image_mean(image_embeddings)
        else:
            state.image_mean = ImageMean.absent()
            state.warnings.append("No encoded images yet to compute an image mean from; running without a mean.")
    elif cfg.mean_path:
        from splice_desktop.core.image_mean import load_image_mean

        state.image_mean = load_image_mean(cfg.mean_path, expected_dim=state.loaded.embed_dim)
    else:
        state.image_mean = ImageMean.absent()
    if (prev is not None and prev.decomposer is not None and state.bank is prev.bank
            and state.image_mean is prev.image_mean):
        # Same bank and mean: keep the decomposer, its prepared float16 matrix and its cached lasso paths.
        state.decomposer = prev.decomposer
    else:
        from splice_desktop.core.decompose import Decomposer

        state.decomposer = Decomposer(state.bank, state.image_mean)
    ctx.check()
    ctx.partial(PipelineStage("mean", state))

    if same_model and prev.zeroshot is not None and prev.config.ensemble == cfg.ensemble:
        state.zeroshot = prev.zeroshot
    else:
        ctx.progress(0, 0, "Encoding zero-shot class prompts…")
        from splice_desktop.core.zeroshot import ZeroShotHead, imagenet_classes

        state.zeroshot = ZeroShotHead(state.loaded, imagenet_classes(), ensemble=cfg.ensemble)
        # Encode (or load) the class prompts here, off the GUI thread and cancellable; otherwise the first
        # comparison would encode 1000 prompts on whichever thread asks first.
        state.zeroshot.prepare(progress=lambda d, t, m="": ctx.progress(d, t, m or "Encoding zero-shot class prompts…"),
                               cancel=ctx.cancel)
    preload_worker_modules()
    return state


def preload_worker_modules() -> None:
    """Import, here on the loader thread, the modules that encoder, thumbnail and solver workers import lazily.

    Importing compiles or unmarshals code while holding the GIL for the whole module; done when the first
    images stream in, that froze the GUI thread for tens of milliseconds (benchmarks/responsiveness.py).
    """
    import numpy.ma  # noqa: F401 - np.unique (used by the lasso path) imports it on first use

    import splice_desktop.core.embeddings  # noqa: F401
    import splice_desktop.core.images  # noqa: F401
    import splice_desktop.core.solvers  # noqa: F401
    import splice_desktop.gui.dialogs.failed_files  # noqa: F401 - imported by the GUI when a file is skipped


def start_pipeline_loader(
    cfg: PipelineConfig,
    previous: Optional[PipelineState] = None,
    image_embeddings: "Optional[np.ndarray]" = None,
    parent: Any = None,
    start: bool = True,
) -> TaskThread:
    """Model loader + concept-bank builder + image mean + zero-shot head, in one cancellable background task."""
    return start_task(lambda ctx: load_pipeline(ctx, cfg, previous, image_embeddings), "pipeline-loader", parent,
                      start)


# ------------------------------------------------------------------------------------------------- encoding


# Decode threads used by the GUI's encoder. Every Python thread competes with the GUI thread for the GIL; one
# decode thread overlapping the model keeps most of the throughput on 2-4 cores while the event loop stays
# responsive (benchmarks/responsiveness.py). The CLI uses core's default.
ENCODE_DECODE_WORKERS = int(os.environ.get("SPLICE_DESKTOP_DECODE_WORKERS", "1"))


@dataclass
class EncodedBatch:
    """One streamed batch: (path, embedding) pairs and ImageLoadErrors. Embeddings are float32 unit rows."""

    paths: list[str]
    embeddings: "np.ndarray"
    failures: list[Any]


def encode_task(ctx: TaskContext, loaded: Any, paths: list[str], batch_size: int = 16,
                decode_workers: int = ENCODE_DECODE_WORKERS) -> Any:
    """Encode ``paths`` with the embedding cache, streaming each batch back as an EncodedBatch partial."""
    import numpy as np

    from splice_desktop.core.embeddings import ImageEmbeddingCache, encode_images

    cache = ImageEmbeddingCache.shared(loaded.key)

    def _on_batch(results: list[Any], failures: list[Any]) -> None:
        if results:
            emb = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in results])
        else:
            emb = np.zeros((0, int(loaded.embed_dim)), dtype=np.float32)
        ctx.partial(EncodedBatch([str(r.path) for r in results], emb, list(failures)))

    def _progress(done: int, total: int, message: str = "") -> None:
        ctx.progress(done, total, message)

    # encode_images flushes the cache itself, also on cancel and on errors.
    return encode_images(
        loaded, [Path(p) for p in paths], batch_size=batch_size, cache=cache,
        progress=_progress, cancel=ctx.cancel, on_batch=_on_batch, workers=decode_workers,
    )


def start_encoder(loaded: Any, paths: list[str], batch_size: int = 16, parent: Any = None,
                  start: bool = True) -> TaskThread:
    return start_task(lambda ctx: encode_task(ctx, loaded, paths, batch_size), "encoder", parent, start)


# ----------------------------------------------------------------------------------------------- thumbnails


def pil_to_qimage(image: Any) -> QImage:
    """A deep-copied RGB888 QImage (safe to hand to another thread; QPixmap is made later on the GUI thread)."""
    rgb = image.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    qimg = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return qimg.copy()


class ThumbnailWorker(QThread):
    """One long-lived thread turning paths into small QImages, newest request first.

    Requests are deduplicated; the GUI keeps only a bounded LRU of pixmaps and re-requests a thumbnail when a
    scrolled-away item becomes visible again, so memory stays flat however many images are loaded.
    """

    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(self, size: int = 96, parent: Any = None) -> None:
        super().__init__(parent)
        self.setObjectName("thumbnails")
        self.size = int(size)
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._queued: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        with _THREADS_LOCK:
            _THREADS.add(self)

    def request(self, path: str) -> None:
        with self._lock:
            if path in self._queued:
                return
            self._queued.add(path)
            self._pending.append(path)
        self._wake.set()

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def _next(self) -> Optional[str]:
        with self._lock:
            if not self._pending:
                return None
            path = self._pending.pop()  # LIFO: what the user just scrolled to comes first
            self._queued.discard(path)
            return path

    def run(self) -> None:  # noqa: D401 - Qt API
        lower_current_thread_priority()
        while not self._stop.is_set():
            path = self._next()
            if path is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                from splice_desktop.core.images import make_thumbnail

                thumb = make_thumbnail(path, size=self.size)
                self.ready.emit(path, pil_to_qimage(thumb))
            except Exception as exc:  # noqa: BLE001 - a bad file shows a placeholder, never stops the worker
                self.failed.emit(path, str(exc))

    def cancel(self) -> None:
        """Ask the loop to end (returns at once; safe from any thread)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout_ms: int = 3000) -> bool:
        self.cancel()
        if self.isRunning():
            return bool(self.wait(timeout_ms))
        return True


@dataclass
class Preview:
    """A decoded preview and, when a display size was given, the same image already smooth-scaled to fit it."""

    image: QImage
    scaled: Optional[QImage] = None


def load_preview_task(ctx: TaskContext, path: str, max_side: int = 1600,
                      fit: Optional[tuple[int, int]] = None) -> Preview:
    """Decode an image for the large view at a bounded size (JPEG draft mode), off the GUI thread.

    ``fit`` (device pixels) also smooth-scales it to the view's current size here: a smooth scale of a 1600 px
    image costs ~10 ms, which the view's first paint would otherwise spend on the GUI thread.
    """
    from PySide6.QtCore import QSize, Qt

    from splice_desktop.core.images import load_image

    image = load_image(path, target_size=max_side)
    ctx.check()
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    qimage = pil_to_qimage(image)
    scaled = None
    if fit is not None and fit[0] > 0 and fit[1] > 0:
        ctx.check()
        scaled = qimage.scaled(QSize(*fit), Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
    return Preview(qimage, scaled)


def start_preview_loader(path: str, max_side: int = 1600, parent: Any = None, start: bool = True,
                         fit: Optional[tuple[int, int]] = None) -> TaskThread:
    return start_task(lambda ctx: load_preview_task(ctx, path, max_side, fit), "preview", parent, start)


# ------------------------------------------------------------------------------------------- batch exports


def decompose_all_task(
    ctx: TaskContext,
    decomposer: Any,
    items: "list[tuple[str, np.ndarray, Any]]",
    lam: float,
) -> list[tuple[str, Any]]:
    """Decompose every (path, z, EditState|None) at the same lambda.

    Used by "Export all decompositions". One lambda per image needs one exact solve, not a whole lasso path
    (a path costs about a hundred solves); a path the view already computed is reused as a lookup.
    """
    out: list[tuple[str, Any]] = []
    total = len(items)
    for i, (path, z, edits) in enumerate(items):
        ctx.check()
        dec = decomposer.decompose(z, lam, path=decomposer.cached_path(z))
        if edits is not None and not edits.is_empty:
            dec = decomposer.edit(z, dec, edits)
        out.append((path, dec))
        ctx.progress(i + 1, total, f"Decomposing {i + 1}/{total}")
    return out


def stop_threads(threads: list[Any], timeout_ms: int = 5000) -> list[Any]:
    """Cancel all, then wait for each within one shared deadline. Returns threads that did not stop."""
    for t in threads:
        if t is None:
            continue
        if hasattr(t, "cancel"):
            t.cancel()
    deadline = time.monotonic() + timeout_ms / 1000.0
    stuck = []
    for t in threads:
        if t is None or not t.isRunning():
            continue
        left = max(0, int((deadline - time.monotonic()) * 1000))
        if not t.wait(max(left, 50)):
            stuck.append(t)
    return stuck

