"""Image embeddings: a threaded decode pipeline that keeps the model busy, and a compact on-disk cache.

Decode + preprocess run in a thread pool (libjpeg, hashlib and torch release the GIL) while the calling thread runs
the model on the previous batch. On 2 cores the forward already keeps both cores busy, so every millisecond of
decode CPU slows the forward down; the per-image work is therefore kept small: one read of the file serves both
the sha256 and the decoder, JPEGs decode in draft mode, and open_clip's standard preprocess runs on uint8
(torch's antialiased bicubic resize, a port of Pillow's, ~6x faster) with the normalisation done once per batch.
Embeddings are cached per (model key, file sha256): re-opening a folder costs one hash per file.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import uuid
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from splice_desktop.core.cache import atomic_write, atomic_write_text, cache_dir, safe_name
from splice_desktop.core.errors import ImageLoadError
from splice_desktop.core.images import load_image, read_with_digest
from splice_desktop.core.progress import CancelToken, ProgressFn, report

CACHE_VERSION = 1
INDEX_NAME = "index.json"


_SHARED: "weakref.WeakValueDictionary[str, ImageEmbeddingCache]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


class ImageEmbeddingCache:
    """Embeddings of one model, keyed by file sha256, stored as one float32 (n, d) .npy plus a json index.

    Disk layout (``cache_dir("embeddings")/<model key>/``): ``index.json`` lists the digests in row order and
    names the current ``vectors-<generation>-<random>.npy``. A flush writes a new generation file and then the index
    (both atomically); the index is the commit point, so a crash leaves the previous consistent state, and a
    memory-mapped old generation is never overwritten in place. Stored rows stay memory-mapped; only
    unflushed rows (at most ``max_pending``) live in RAM, so memory is bounded however many images are cached.
    """

    @classmethod
    def shared(cls, model_key: str) -> "ImageEmbeddingCache":
        """The one cache object of this process for ``model_key``'s default folder.

        Why: two objects on one folder each commit their own row list, so the later flush drops the rows the
        other one added (cache misses on the next run). The GUI's encoder and the CLIP-InterpreT pool index both
        write; sharing one object (it is thread-safe) keeps every row. Held weakly: the last user releasing it
        ends it (callers flush, as ``encode_images`` does)."""
        folder = str((cache_dir("embeddings") / safe_name(model_key)).resolve())
        with _SHARED_LOCK:
            obj = _SHARED.get(folder)
            if obj is None:
                obj = cls(model_key)
                _SHARED[folder] = obj
            return obj

    def __init__(self, model_key: str, root: Optional[Path] = None, max_pending: int = 2048) -> None:
        self.model_key = model_key
        self.folder = Path(root) if root is not None else cache_dir("embeddings") / safe_name(model_key)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_pending = max_pending
        self._lock = threading.RLock()
        self._rows: dict[str, int] = {}
        self._digests: list[str] = []
        self._vectors: Optional[np.ndarray] = None  # memory-mapped (n, d)
        self._vector_file: Optional[str] = None
        self._generation = 0
        self._dim: Optional[int] = None
        self._pending: dict[str, np.ndarray] = {}
        self._load()

    # -- reading

    def _load(self) -> None:
        index_path = self.folder / INDEX_NAME
        if not index_path.is_file():
            return
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            if index.get("version") != CACHE_VERSION:
                return  # written by another format version: start afresh (the next flush replaces it)
            vectors = np.load(self.folder / index["vectors"], mmap_mode="r")
            digests = list(index["digests"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # unreadable cache = empty cache; it is only a cache
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] < len(digests):
            return
        self._vectors = vectors
        self._vector_file = str(index["vectors"])
        self._generation = int(index.get("generation", 0))
        self._dim = int(vectors.shape[1])
        self._digests = digests
        self._rows = {d: i for i, d in enumerate(digests)}

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows) + sum(1 for d in self._pending if d not in self._rows)

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            return digest in self._pending or digest in self._rows

    def get(self, digest: str) -> Optional[np.ndarray]:
        """The cached (d,) float32 embedding (a copy), or None."""
        with self._lock:
            vec = self._pending.get(digest)
            if vec is not None:
                return vec.copy()
            row = self._rows.get(digest)
            if row is None or self._vectors is None:
                return None
            return np.array(self._vectors[row], dtype=np.float32)

    # -- writing

    def put(self, digest: str, vec: np.ndarray) -> None:
        self.put_many([digest], np.asarray(vec, dtype=np.float32).reshape(1, -1))

    def put_many(self, digests: Sequence[str], vecs: np.ndarray) -> None:
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(digests):
            raise ValueError(f"put_many: {len(digests)} digests but vectors of shape {vecs.shape}")
        with self._lock:
            if self._dim is None:
                self._dim = int(vecs.shape[1])
            elif vecs.shape[1] != self._dim:
                raise ValueError(
                    f"Embedding size {vecs.shape[1]} does not match this cache ({self._dim}) for {self.model_key}"
                )
            for digest, vec in zip(digests, vecs):
                if digest not in self._rows:
                    self._pending[digest] = vec.copy()
            if len(self._pending) >= self.max_pending:
                self.flush()

    def flush(self) -> None:
        """Persist pending rows: new generation .npy, then index.json (commit), then drop the old generation."""
        with self._lock:
            if not self._pending:
                return
            new_digests = list(self._pending)
            new_rows = np.stack([self._pending[d] for d in new_digests]).astype(np.float32, copy=False)
            generation = self._generation + 1
            # A unique name per flush: two cache objects on the same folder can never pair an index with
            # another writer's rows (the worst a race can do is lose rows, i.e. cause cache misses).
            name = f"vectors-{generation}-{uuid.uuid4().hex[:8]}.npy"
            self._write_merged(self.folder / name, new_rows)
            digests = self._digests + new_digests
            index = {
                "version": CACHE_VERSION,
                "model_key": self.model_key,
                "dim": int(new_rows.shape[1]),
                "generation": generation,
                "vectors": name,
                "digests": digests,
            }
            atomic_write_text(self.folder / INDEX_NAME, json.dumps(index))
            old_file = self._vector_file
            self._vectors = np.load(self.folder / name, mmap_mode="r")
            self._vector_file = name
            self._generation = generation
            self._digests = digests
            self._rows.update({d: len(digests) - len(new_digests) + i for i, d in enumerate(new_digests)})
            self._pending.clear()
            if old_file and old_file != name:
                try:
                    os.remove(self.folder / old_file)
                except OSError:
                    pass  # e.g. still mapped on Windows; harmless, the index no longer names it
            self._remove_stale()

    def _write_merged(self, target: Path, new_rows: np.ndarray, chunk: int = 8192) -> None:
        """Old rows (streamed from the memory map in chunks, so RAM stays bounded) + new rows -> one .npy."""
        n_old = len(self._digests) if self._vectors is not None else 0
        shape = (n_old + new_rows.shape[0], new_rows.shape[1])

        def writer(tmp: Path) -> None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            for start in range(0, n_old, chunk):
                stop = min(start + chunk, n_old)
                out[start:stop] = self._vectors[start:stop]
            out[n_old:] = new_rows
            out.flush()
            del out

        atomic_write(target, writer)

    def _remove_stale(self) -> None:
        """Delete vector files that neither this object nor the on-disk index uses (left by crashes or races)."""
        keep = {self._vector_file}
        try:
            keep.add(json.loads((self.folder / INDEX_NAME).read_text(encoding="utf-8")).get("vectors"))
        except (OSError, ValueError, AttributeError):
            pass
        for path in self.folder.glob("vectors-*.npy"):
            if path.name not in keep:
                try:
                    path.unlink()
                except OSError:
                    pass  # e.g. still memory-mapped on Windows; a later flush retries


# ----------------------------------------------------------------------------------------------- encoding


@dataclass
class EncodedImage:
    path: Path
    digest: str
    embedding: np.ndarray  # (d,) float32, unit norm


@dataclass
class EncodeReport:
    results: list[EncodedImage] = field(default_factory=list)
    failures: list[ImageLoadError] = field(default_factory=list)
    cancelled: bool = False
    cache_hits: int = 0


OnBatch = Callable[[list[EncodedImage], list[ImageLoadError]], None]


@dataclass(frozen=True)
class _UInt8Plan:
    """open_clip's standard preprocess, as numbers: resize the shorter side to ``resize`` (bicubic, antialiased),
    centre-crop ``crop`` (h, w), scale to [0, 1], normalise by ``mean``/``std``."""

    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _uint8_plan(transform: Any) -> Optional[_UInt8Plan]:
    """The plan if ``transform`` is exactly open_clip's default image transform, else None (use it as is).

    Anything else (squash or keep-ratio resizing, other filters, extra steps) keeps the model's own transform,
    so unusual models stay correct and only lose the speed-up.
    """
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", None) or [])
    if len(steps) < 3:
        return None
    resize, crop, *rest = steps
    if not (isinstance(resize, T.Resize) and isinstance(crop, T.CenterCrop)):
        return None
    size = resize.size if isinstance(resize.size, int) else (
        resize.size[0] if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1 else None
    )
    if size is None or resize.max_size is not None or resize.interpolation != T.InterpolationMode.BICUBIC:
        return None
    if not _uint8_resize_supported():
        return None
    crop_hw = tuple(int(v) for v in crop.size)
    if len(crop_hw) != 2 or max(crop_hw) > size:
        return None  # a crop larger than the resized image would pad
    rgb = [t for t in rest if _is_rgb_convert(t)]
    rest = [t for t in rest if not _is_rgb_convert(t)]  # no-ops: load_image always returns RGB
    if len(rest) != 2 or not isinstance(rest[0], T.ToTensor) or not isinstance(rest[1], T.Normalize):
        return None
    mean, std = tuple(float(v) for v in rest[1].mean), tuple(float(v) for v in rest[1].std)
    if len(mean) != 3 or len(std) != 3 or len(rgb) > 1:
        return None
    return _UInt8Plan(int(size), (crop_hw[0], crop_hw[1]), mean, std)


@functools.lru_cache(maxsize=1)
def _uint8_resize_supported() -> bool:
    """Whether this torch resizes uint8 images with antialiased bicubic (older releases only do float)."""
    import torch

    try:
        probe = torch.zeros((1, 3, 8, 8), dtype=torch.uint8)
        out = torch.nn.functional.interpolate(probe, size=(4, 4), mode="bicubic", antialias=True)
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    return out.dtype == torch.uint8


def _is_rgb_convert(step: Any) -> bool:
    """open_clip's MaybeConvertMode("RGB") (or its older _convert_to_rgb function)."""
    if type(step).__name__ == "MaybeConvertMode":
        return getattr(step, "mode", None) == "RGB"
    return getattr(step, "__name__", "") == "_convert_to_rgb"


def _resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(h, w) after resizing the shorter side to ``short``, rounded exactly as torchvision's Resize does."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


# Pillow (>= 13) resamples images about twice as tall as wide vertically first; torch always goes horizontally
# first, and the 8-bit rounding between the two passes then differs by several levels. Such images (phone
# screenshots, panoramas) take Pillow's own resize instead: exact, just not faster.
TALL_RATIO = 1.9


class ImagePreprocessor:
    """A model's image transform split into per-image work (decode threads) and per-batch work (model thread).

    For open_clip's default transform the per-image part is a uint8 resize + centre crop and the batch part one
    uint8 -> float normalisation; the result matches the stock transform to within 2 levels of 8 bits, with
    under 2% of values differing at all (tests/core/test_embeddings.py). Other transforms run unchanged per image.
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self.plan = _uint8_plan(transform)

    def pixels(self, img: Any) -> Any:
        """Per image: uint8 (3, h, w) on the fast path, else the transform's float tensor."""
        if self.plan is None:
            return self.transform(img)
        import torch

        if img.mode != "RGB":  # what the stock transform's MaybeConvertMode does; load_image already gives RGB
            img = img.convert("RGB")
        width, height = img.size
        if height > TALL_RATIO * width:
            return self._pillow_pixels(img)
        new_h, new_w = _resized_size(width, height, self.plan.resize)
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)  # channels-last view
        if (new_h, new_w) != (height, width):  # torchvision skips the resize too when the size already fits
            x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True)
        ch, cw = self.plan.crop
        top, left = int(round((new_h - ch) / 2.0)), int(round((new_w - cw) / 2.0))
        return x[0, :, top : top + ch, left : left + cw].contiguous()

    def _pillow_pixels(self, img: Any) -> Any:
        """The stock transform's own resize + crop (Pillow), as uint8: same values as the stock path."""
        import torch

        resize, crop = self.transform.transforms[:2]
        arr = np.array(crop(resize(img)), dtype=np.uint8)
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def batch(self, items: Sequence[Any]) -> Any:
        """Stack per-image results into a float32 (B, 3, h, w) model batch, normalising uint8 ones in one pass."""
        import torch

        stacked = torch.stack(list(items))
        if stacked.dtype != torch.uint8:
            return stacked
        assert self.plan is not None
        mean = torch.tensor(self.plan.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.plan.std, dtype=torch.float32).view(1, 3, 1, 1)
        # Same operations in the same order as ToTensor + Normalize, so only the resize differs from the stock path.
        return stacked.to(torch.float32).div_(255.0).sub_(mean).div_(std)

    def tensor(self, img: Any) -> Any:
        """One image -> its float (3, h, w) model input, same values as a batch of one."""
        return self.batch([self.pixels(img)])[0]


@dataclass
class _Prepared:
    """What a worker hands back for one file: a cache hit, a ready tensor, or a failure.

    ``tensor`` is the float model input, or with ``prepare_image(..., per_batch=True)`` the per-image part
    (uint8 pixels for open_clip's default transform) that ``ImagePreprocessor.batch`` finishes.
    """

    path: Path
    digest: str = ""
    embedding: Optional[np.ndarray] = None
    tensor: Any = None
    error: Optional[ImageLoadError] = None


def prepare_image(loaded: Any, path: Path, cache: Optional[ImageEmbeddingCache] = None,
                  digest: Optional[str] = None, preprocessor: Optional[ImagePreprocessor] = None,
                  per_batch: bool = False) -> _Prepared:
    """Digest first (a cache hit skips decoding), else decode in draft mode at the model's size and preprocess.

    The file is read once: the same bytes are hashed and decoded. ``digest``: the file's content digest when the
    caller already has it (the file is then read only to decode). ``per_batch``: do only the per-image part of
    ``preprocessor`` (default: one built from ``loaded.preprocess``) and leave the rest to
    ``ImagePreprocessor.batch``, as encode_images does; otherwise ``tensor`` is exactly ``loaded.preprocess(img)``.
    """
    try:
        data: Optional[bytes] = None
        if not digest:
            digest, data = read_with_digest(path)
        if cache is not None:
            hit = cache.get(digest)
            if hit is not None:
                return _Prepared(path, digest, embedding=hit)
        img = load_image(path, target_size=loaded.image_size, data=data)
        try:
            if per_batch:
                tensor = (preprocessor or ImagePreprocessor(loaded.preprocess)).pixels(img)
            else:
                tensor = loaded.preprocess(img)
        except Exception as exc:  # noqa: BLE001 - a transform failing on one odd image must not stop the batch
            raise ImageLoadError(path, f"could not preprocess the image ({type(exc).__name__}: {exc})") from exc
        return _Prepared(path, digest, tensor=tensor)
    except ImageLoadError as exc:
        return _Prepared(path, error=exc)


def decode_thread_init() -> None:
    """Make torch ops in a decode thread single-threaded.

    The per-image torch ops (a 224-pixel uint8 resize, or the stock ToTensor + Normalize) are too small to be
    worth parallelising, and the cores belong to the model forward. With torch's OpenMP backend the thread count
    is per calling thread (checked: setting it in a worker leaves the main thread's count alone), so this cannot
    slow the model; with other backends the setting is global, so it is left untouched.
    """
    import torch

    if "OpenMP" in _parallel_backend():
        torch.set_num_threads(1)


def _parallel_backend() -> str:
    import torch

    for line in torch.__config__.parallel_info().splitlines():
        if "parallel backend" in line:
            return line
    return ""


def encode_images(
    loaded: Any,
    paths: Iterable[str | Path],
    batch_size: int = 16,
    cache: Optional[ImageEmbeddingCache] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
    on_batch: Optional[OnBatch] = None,
    workers: int = 2,
) -> EncodeReport:
    """Embed images in input order; failures are listed and the batch continues.

    Decoding runs ahead in ``workers`` threads (bounded look-ahead, so memory stays flat) while the model runs
    here. Each model batch (plus any cache hits and failures in between) is streamed to ``on_batch``. On cancel
    this returns ``EncodeReport(cancelled=True)`` holding everything finished so far; it does not raise.
    """
    paths = [Path(p) for p in paths]
    total = len(paths)
    rep = EncodeReport()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    report(progress, 0, total, "Encoding images")
    if total == 0:
        return rep

    pre = ImagePreprocessor(loaded.preprocess)
    pool = ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="decode", initializer=decode_thread_init
    ) if workers > 0 else None
    lookahead = 2 * batch_size + max(workers, 1)
    queue: deque[Future | _Prepared] = deque()
    next_index = 0

    def fill() -> None:
        nonlocal next_index
        while next_index < total and len(queue) < lookahead:
            path = paths[next_index]
            next_index += 1
            if pool is None:
                queue.append(prepare_image(loaded, path, cache, preprocessor=pre, per_batch=True))
            else:
                queue.append(pool.submit(prepare_image, loaded, path, cache, preprocessor=pre, per_batch=True))

    chunk: list[_Prepared] = []
    n_tensors = 0
    done = 0

    def flush_chunk() -> None:
        nonlocal chunk, n_tensors, done
        if not chunk:
            return
        tensors = [p.tensor for p in chunk if p.tensor is not None]
        feats = loaded.encode_image_tensor(pre.batch(tensors)) if tensors else None
        new_results: list[EncodedImage] = []
        new_failures: list[ImageLoadError] = []
        fresh_digests: list[str] = []
        row = 0
        for item in chunk:
            if item.error is not None:
                new_failures.append(item.error)
            elif item.embedding is not None:
                new_results.append(EncodedImage(item.path, item.digest, item.embedding))
                rep.cache_hits += 1
            else:
                assert feats is not None
                new_results.append(EncodedImage(item.path, item.digest, feats[row].copy()))
                fresh_digests.append(item.digest)
                row += 1
        if cache is not None and fresh_digests:
            cache.put_many(fresh_digests, feats)
        rep.results.extend(new_results)
        rep.failures.extend(new_failures)
        done += len(chunk)
        chunk, n_tensors = [], 0
        if on_batch is not None:
            on_batch(new_results, new_failures)
        report(progress, done, total, "Encoding images")

    try:
        fill()
        while queue:
            if cancel is not None and cancel.cancelled:
                rep.cancelled = True
                break
            head = queue.popleft()
            item = head.result() if isinstance(head, Future) else head
            fill()
            chunk.append(item)
            if item.tensor is not None:
                n_tensors += 1
            # A chunk closes at a full model batch, or when hits/failures alone have piled up (keeps UI updates flowing).
            if n_tensors >= batch_size or len(chunk) >= 4 * batch_size:
                flush_chunk()
        if not rep.cancelled:
            flush_chunk()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if cache is not None:
            cache.flush()
    return rep
