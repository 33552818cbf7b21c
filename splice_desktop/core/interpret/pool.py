"""PoolIndex: the user's own image folders as the reference pool for the nearest-neighbour analyses.

Per image we store the exact compact record of every head in the chosen layers (default: the last four):
u = sum_n A_n v_n (d_h floats per head) plus three scalars; ``head_matrix(layer, head)`` rebuilds the E-dim
token-summed parts on demand (report section 2.2: exact, 8-16x smaller than E-dim float32 on disk). Arrays are
memory-mapped .npy files under cache_dir("heads")/<model key>/, keyed by model (architecture + weights) and by the
folder set. Updates are incremental: unchanged files (same path, size, mtime) are reused without hashing; changed or
new files are hashed, and only digests not already indexed are encoded; removed files are dropped. The final image
embedding of every encoded image also goes into the SpLiCE ``ImageEmbeddingCache`` so the two never encode twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from splice_desktop.core.cache import atomic_save_npy, atomic_write_text, cache_dir
from splice_desktop.core.errors import CancelledError, ImageLoadError
from splice_desktop.core.interpret.heads import HeadDecomposer
from splice_desktop.core.progress import CancelToken, ProgressFn, report

POOL_VERSION = 1
DEFAULT_BATCH = 8


@dataclass
class UpdateReport:
    """What one ``update`` did; ``cancelled`` keeps what was finished (the next update resumes from there)."""

    added: int = 0
    changed: int = 0
    reused: int = 0
    removed: int = 0
    failures: list[ImageLoadError] = field(default_factory=list)
    cancelled: bool = False
    total: int = 0


def default_layers(num_layers: int) -> tuple[int, ...]:
    return tuple(range(max(0, num_layers - 4), num_layers))


def _folders_id(folders: Sequence[Path], layers: Sequence[int]) -> str:
    text = "\n".join(str(Path(f).expanduser().resolve()) for f in folders) + f"|{tuple(layers)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class PoolIndex:
    """An incremental, memory-mapped per-head index over image folders for one model."""

    def __init__(
        self,
        loaded: Any,
        folders: Sequence[str | Path],
        layers: Optional[Sequence[int]] = None,
        root: Optional[Path] = None,
    ) -> None:
        self.loaded = loaded
        self.folders = [Path(f).expanduser() for f in folders]
        probe = HeadDecomposer(loaded, layers=[])
        n_layers = probe.num_layers
        chosen = default_layers(n_layers) if layers is None else tuple(sorted({l % n_layers for l in layers}))
        self.layers: tuple[int, ...] = chosen
        self._decomposer: Optional[HeadDecomposer] = None  # built on first use (L-14: ~19 GFLOP of constants)
        self._num_layers = n_layers
        self._num_heads = probe.num_heads
        self.model_key: str = loaded.key
        base = root if root is not None else cache_dir("heads")
        self.dir = Path(base) / self.model_key / f"pool-{_folders_id(self.folders, self.layers)}"
        self._entries: list[dict[str, Any]] = []
        self._u: np.ndarray = np.zeros((0, len(self.layers), probe.num_heads, probe.head_dim), np.float32)
        self._scalars: np.ndarray = np.zeros((0, 3), np.float32)
        self._emb: np.ndarray = np.zeros((0, probe.embed_dim), np.float32)
        self._heads_cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.RLock()  # an update (worker thread) swaps arrays while a query may be reading
        self._load()

    # ---- public view ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    @property
    def paths(self) -> list[Path]:
        return [Path(e["path"]) for e in self._entries]

    @property
    def digests(self) -> list[str]:
        return [e["digest"] for e in self._entries]

    @property
    def num_heads(self) -> int:
        return self._num_heads

    @property
    def decomposer(self) -> HeadDecomposer:
        with self._lock:
            if self._decomposer is None:
                self._decomposer = HeadDecomposer(self.loaded, layers=self.layers)
            return self._decomposer

    @property
    def embeddings(self) -> np.ndarray:
        """(N, E) unit image embeddings of the pool (same as the SpLiCE cache's)."""
        return self._emb

    def head_matrix(self, layer: int, head: int) -> np.ndarray:
        """(N, E) float32 token-summed parts of one head over the pool, rebuilt exactly from u (LRU of 8 heads)."""
        layer = layer % self._num_layers
        if layer not in self.layers:
            raise KeyError(f"layer {layer} not indexed (layers {list(self.layers)})")
        key = (layer, head)
        with self._lock:
            hit = self._heads_cache.get(key)
            if hit is not None:
                self._heads_cache.move_to_end(key)
                return hit
            s = self.layers.index(layer)
            mat = self.decomposer.head_outputs(self._u[:, s, head], self._scalars, layer, head)
            self._heads_cache[key] = mat
            while len(self._heads_cache) > 8:
                self._heads_cache.popitem(last=False)
            return mat

    def nbytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*") if p.is_file())

    # ---- storage -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        manifest = self.dir / "manifest.json"
        if not manifest.is_file():
            return
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
            if meta.get("version") != POOL_VERSION or meta.get("model_key") != self.model_key or tuple(
                meta.get("layers", ())
            ) != self.layers:
                return
            u = np.load(self.dir / "u.npy", mmap_mode="r")
            sc = np.load(self.dir / "scalars.npy", mmap_mode="r")
            emb = np.load(self.dir / "embeddings.npy", mmap_mode="r")
        except (OSError, ValueError, KeyError):
            return  # unreadable index: rebuilt from scratch on the next update
        n = len(meta["entries"])
        if u.shape[0] != n or sc.shape[0] != n or emb.shape[0] != n or u.shape[1:] != self._u.shape[1:]:
            return
        self._entries, self._u, self._scalars, self._emb = list(meta["entries"]), u, sc, emb

    def _save(self, entries: list[dict[str, Any]], u: np.ndarray, sc: np.ndarray, emb: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # arrays first, manifest last: a manifest never points at arrays of another length (checked on load)
        atomic_save_npy(self.dir / "u.npy", np.ascontiguousarray(u, dtype=np.float32))
        atomic_save_npy(self.dir / "scalars.npy", np.ascontiguousarray(sc, dtype=np.float32))
        atomic_save_npy(self.dir / "embeddings.npy", np.ascontiguousarray(emb, dtype=np.float32))
        meta = {
            "version": POOL_VERSION,
            "model_key": self.model_key,
            "layers": list(self.layers),
            "folders": [str(f) for f in self.folders],
            "entries": entries,
        }
        atomic_write_text(self.dir / "manifest.json", json.dumps(meta))
        with self._lock:
            self._heads_cache.clear()
            self._load()

    # ---- incremental update --------------------------------------------------------------------------------
    def update(
        self,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[CancelToken] = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> UpdateReport:
        """Bring the index in line with the folders; only new or changed image contents are encoded."""
        from splice_desktop.core.images import collect_image_files, file_digest

        rep = UpdateReport()
        collected = collect_image_files(self.folders)
        rep.failures.extend(collected.skipped)
        files = list(collected.files)
        rep.total = len(files)
        old_by_path = {e["path"]: i for i, e in enumerate(self._entries)}
        old_by_digest = {e["digest"]: i for i, e in enumerate(self._entries)}
        plan: list[tuple[Path, dict[str, Any], Optional[int]]] = []  # (file, entry, old row or None)
        report(progress, 0, len(files), "Checking pool files")
        for path in files:
            if cancel is not None and cancel.cancelled:
                rep.cancelled = True
                return rep
            try:
                st = path.stat()
            except OSError as exc:
                rep.failures.append(ImageLoadError(path, f"cannot read file ({exc.strerror})"))
                continue
            key = str(path)
            i = old_by_path.get(key)
            if i is not None and self._entries[i]["size"] == st.st_size and self._entries[i]["mtime_ns"] == st.st_mtime_ns:
                plan.append((path, dict(self._entries[i]), i))
                continue
            try:
                digest = file_digest(path)
            except (OSError, ImageLoadError) as exc:
                rep.failures.append(exc if isinstance(exc, ImageLoadError) else ImageLoadError(path, str(exc)))
                continue
            entry = {"path": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "digest": digest}
            plan.append((path, entry, old_by_digest.get(digest)))
        rep.reused = sum(1 for _, _, row in plan if row is not None)
        plan_paths = {entry["path"] for _, entry, _ in plan}
        rep.removed = sum(1 for e in self._entries if e["path"] not in plan_paths)
        rep.changed = sum(
            1 for _, entry, row in plan
            if row is None
            and entry["path"] in old_by_path
            and self._entries[old_by_path[entry["path"]]]["digest"] != entry["digest"]
        )

        todo = [(k, p) for k, (p, _, row) in enumerate(plan) if row is None]
        # same content twice in the pool: encode once
        first_of_digest: dict[str, int] = {}
        encode_list: list[tuple[int, Path, str]] = []
        for k, p in todo:
            d = plan[k][1]["digest"]
            if d not in first_of_digest:
                first_of_digest[d] = k
                encode_list.append((k, p, d))
        new_rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        failed: set[int] = set()
        try:
            self._encode(encode_list, new_rows, failed, rep, progress, cancel, batch_size)
        except CancelledError:
            rep.cancelled = True
        # assemble: old rows kept, new rows in file order, duplicates share the first encoding
        entries, us, scs, embs = [], [], [], []
        for k, (p, entry, row) in enumerate(plan):
            if row is not None:
                vals = (self._u[row], self._scalars[row], self._emb[row])
            else:
                src = first_of_digest.get(entry["digest"], k)
                if src in failed or src not in new_rows:
                    continue
                vals = new_rows[src]
            entries.append(entry)
            us.append(vals[0])
            scs.append(vals[1])
            embs.append(vals[2])
        rep.added = len(entries) - rep.reused - rep.changed
        shape_u = self._u.shape[1:]
        self._save(
            entries,
            np.stack(us) if us else np.zeros((0, *shape_u), np.float32),
            np.stack(scs) if scs else np.zeros((0, 3), np.float32),
            np.stack(embs) if embs else np.zeros((0, self._emb.shape[1]), np.float32),
        )
        return rep

    def _encode(
        self,
        items: list[tuple[int, Path, str]],
        out: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
        failed: set[int],
        rep: UpdateReport,
        progress: Optional[ProgressFn],
        cancel: Optional[CancelToken],
        batch_size: int,
    ) -> None:
        """Decode the next batch in a thread while the model runs on the current one (PIL releases the GIL)."""
        from splice_desktop.core.embeddings import (
            ImageEmbeddingCache,
            ImagePreprocessor,
            decode_thread_init,
            prepare_image,
        )

        emb_cache = ImageEmbeddingCache.shared(self.model_key)
        pre = ImagePreprocessor(self.loaded.preprocess)  # the same preprocessing as SpLiCE encoding, so the
        # embeddings both write to the shared cache agree

        def decode_batch(batch: list[tuple[int, Path, str]]) -> list[tuple[int, str, Any]]:
            # Same decode + preprocess as SpLiCE encoding (draft mode, named errors); no cache lookup, because
            # the pool needs the per-head vectors, which only a forward pass gives.
            res = []
            for k, path, digest in batch:
                prepared = prepare_image(self.loaded, path, digest=digest, preprocessor=pre, per_batch=True)
                res.append((k, digest, prepared.error if prepared.error is not None else prepared.tensor))
            return res

        total = len(items)
        done = 0
        report(progress, 0, total, "Indexing pool images")
        batches = [items[i : i + batch_size] for i in range(0, total, batch_size)]
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-decode",
                                initializer=decode_thread_init) as pool:
            future = pool.submit(decode_batch, batches[0])
            try:
                for b in range(len(batches)):
                    decoded = future.result()
                    if cancel is not None and cancel.cancelled:
                        raise CancelledError()
                    if b + 1 < len(batches):
                        future = pool.submit(decode_batch, batches[b + 1])
                    ok = [(k, d, t) for k, d, t in decoded if not isinstance(t, ImageLoadError)]
                    for k, _, t in decoded:
                        if isinstance(t, ImageLoadError):
                            rep.failures.append(t)
                            failed.add(k)
                    if ok:
                        dec = self.decomposer.run(pre.batch([t for _, _, t in ok]))
                        u, sc, emb = dec.head_u(), dec.pool_scalars(), dec.embedding
                        for j, (k, digest, _) in enumerate(ok):
                            out[k] = (u[j], sc[j], emb[j])
                            emb_cache.put(digest, emb[j])
                    done += len(decoded)
                    report(progress, done, total, "Indexing pool images")
            finally:
                emb_cache.flush()
