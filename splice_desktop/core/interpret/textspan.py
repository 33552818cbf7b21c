"""TEXTSPAN (Gandelsman et al., ICLR 2024): greedy choice of the texts that explain a head's output variance.

Exactly the published loop (report section 3): project the texts onto the top-r right singular vectors of the
uncentred head outputs C (K x E), centre C, then repeatedly pick the text whose direction carries the largest std of
C's projections, and deflate both C and the texts along it (Gram-Schmidt).

Why it is fast here: every projected text lies in the rank-r span, so the whole loop runs in r coordinates and only
needs the r x r covariance S of centred C: std_j = sqrt(r_j^T S r_j), and deflation is S <- P S P with
P = I - t t^T / |t|^2. Cost per pick is M r^2, independent of the number of pool images K.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from splice_desktop.core.cache import atomic_save_npy, atomic_write_text, cache_dir
from splice_desktop.core.progress import CancelToken, ProgressFn, check, report

DEFAULT_RANK = 80
DEFAULT_TEXTS_PER_HEAD = 10
TEXTSPAN_VERSION = 1
SMALL_POOL_WARNING = 1000  # below this many pool images TEXTSPAN descriptions get noisy (report section 8)


@dataclass(frozen=True)
class TextSpanResult:
    """Ordered picks for one head: text indices, their texts, and the share of variance each pick removed."""

    indices: tuple[int, ...]
    texts: tuple[str, ...]
    explained: tuple[float, ...]  # fraction of the head's total (centred) variance removed by each pick
    num_images: int

    @property
    def explained_total(self) -> float:
        return float(sum(self.explained))

    def to_json(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "texts": list(self.texts), "explained": list(self.explained),
                "num_images": self.num_images}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TextSpanResult":
        return cls(tuple(d["indices"]), tuple(d["texts"]), tuple(d["explained"]), int(d["num_images"]))


def textspan(
    C: np.ndarray,
    R: np.ndarray,
    m: int = DEFAULT_TEXTS_PER_HEAD,
    rank: int = DEFAULT_RANK,
    texts: Optional[Sequence[str]] = None,
) -> TextSpanResult:
    """Run the greedy loop on one head's outputs ``C`` (K, E) over text embeddings ``R`` (M, E, unit rows)."""
    C = np.asarray(C, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    K, E = C.shape
    if R.shape[1] != E:
        raise ValueError(f"text embeddings have dim {R.shape[1]}, head outputs {E}")
    if K < 2:
        raise ValueError("TEXTSPAN needs at least 2 pool images (variance over images).")
    # 1. span of the uncentred outputs: top right singular vectors of C = top eigenvectors of the Gram C^T C
    #    (one K x E x E product instead of an SVD of the K x E matrix; the same subspace)
    G = C.T @ C
    evals, evecs = np.linalg.eigh(G)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    top = evals[0] if evals.size else 0.0
    r = int(min(rank, np.sum(evals > top * 1e-12))) if top > 0 else 1
    r = max(r, 1)
    V = evecs[:, :r].T  # (r, E)
    Rr = R @ V.T  # (M, r) coordinates of the projected texts
    # 2. centred covariance in the span (variance outside it cannot be explained by projected texts)
    mean = C.mean(axis=0)
    Gc = G - K * np.outer(mean, mean)
    total_var = float(np.trace(Gc)) / K
    S = V @ Gc @ V.T / K  # (r, r)
    picks: list[int] = []
    explained: list[float] = []
    m = int(min(m, R.shape[0]))
    for _ in range(m):
        var = np.einsum("mr,rs,ms->m", Rr, S, Rr, optimize=True)
        var = np.maximum(var, 0.0)
        if picks:
            var[picks] = -1.0
        j = int(np.argmax(var))
        t = Rr[j].copy()
        tt = float(t @ t)
        before = float(np.trace(S))
        if tt <= 1e-20:
            picks.append(j)
            explained.append(0.0)
            continue
        P = np.eye(r) - np.outer(t, t) / tt
        S = P @ S @ P
        Rr = Rr - np.outer(Rr @ t / tt, t)
        picks.append(j)
        explained.append((before - float(np.trace(S))) / total_var if total_var > 0 else 0.0)
    names = tuple(texts[i] for i in picks) if texts is not None else tuple(str(i) for i in picks)
    return TextSpanResult(tuple(picks), names, tuple(float(x) for x in explained), K)


# ---- cached text embeddings and per-head descriptions --------------------------------------------------------
def pool_text_embeddings(
    loaded: Any,
    pool: Any,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """(M, E) unit text embeddings of a TextPool, cached per (model key, pool sha) and memory-mapped on reload."""
    from splice_desktop.core.text_encoder import encode_texts

    path = cache_dir("textspan") / f"texts-{loaded.key}-{pool.sha256[:16]}-v{TEXTSPAN_VERSION}.npy"
    if path.is_file():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (len(pool), loaded.embed_dim) and arr.dtype == np.float32:
            return arr
    emb = encode_texts(loaded, list(pool.texts), progress=progress, cancel=cancel)
    atomic_save_npy(path, np.ascontiguousarray(emb, dtype=np.float32))
    return emb


def _result_path(model_key: str, pool_sha: str, data_sha: str, layer: int, head: int, m: int, rank: int):
    name = f"{model_key}-{pool_sha[:16]}-{data_sha[:16]}-L{layer}H{head}-m{m}-r{rank}-v{TEXTSPAN_VERSION}.json"
    return cache_dir("textspan") / name


def data_fingerprint(C: np.ndarray) -> str:
    """Content hash of one head's outputs, so a cache entry is reused only for the same pool contents."""
    a = np.ascontiguousarray(C, dtype=np.float32)
    return hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest()


def describe_heads(
    loaded: Any,
    head_outputs: Any,
    heads: Sequence[tuple[int, int]],
    pool: Any,
    m: int = DEFAULT_TEXTS_PER_HEAD,
    rank: int = DEFAULT_RANK,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
) -> dict[tuple[int, int], TextSpanResult]:
    """TEXTSPAN texts for each (layer, head), cached per (model key, pool sha, pool-data hash, head).

    ``head_outputs(layer, head) -> (K, E)`` returns that head's token-summed outputs over the image pool (e.g.
    ``PoolIndex.head_matrix``).
    """
    R: Optional[np.ndarray] = None
    out: dict[tuple[int, int], TextSpanResult] = {}
    total = len(heads)
    for i, (layer, head) in enumerate(heads):
        check(cancel)
        C = np.asarray(head_outputs(layer, head), dtype=np.float32)
        path = _result_path(loaded.key, pool.sha256, data_fingerprint(C), layer, head, m, rank)
        if path.is_file():
            try:
                out[(layer, head)] = TextSpanResult.from_json(json.loads(path.read_text(encoding="utf-8")))
                report(progress, i + 1, total, f"TEXTSPAN L{layer}.H{head} (cached)")
                continue
            except (ValueError, KeyError):
                path.unlink(missing_ok=True)
        if R is None:
            R = np.asarray(pool_text_embeddings(loaded, pool, cancel=cancel), dtype=np.float32)
        res = textspan(C, R, m=m, rank=rank, texts=pool.texts)
        atomic_write_text(path, json.dumps(res.to_json()))
        out[(layer, head)] = res
        report(progress, i + 1, total, f"TEXTSPAN L{layer}.H{head}")
    return out
