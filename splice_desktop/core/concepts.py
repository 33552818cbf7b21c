"""The concept bank C: text embeddings of the vocabulary, centred as the SpLiCE authors do, cached on disk.

Recipe (reference ``splice.py:115-129``): encode each raw concept (no prompt template), L2-normalise, subtract the
mean of the *selected* concepts, L2-normalise again. Encoding 10k concepts takes a while on a CPU, so the result
is cached per (model key = architecture + weights fingerprint, vocabulary content hash, ``VERSION``) and a second
load memory-maps the file without touching the text encoder.

Cache file layout: one ``.npy`` of shape (k + 1, d) float32: rows 0..k-1 are C, row k is the concept mean. One
file means one atomic write, so C and its mean can never disagree; ``matrix`` is a C-contiguous read-only view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from splice_desktop.core.cache import atomic_save_npy, cache_dir, load_npy_mmap, safe_name
from splice_desktop.core.errors import VocabularyError
from splice_desktop.core.image_mean import (  # noqa: F401 - re-exported: the contract groups them with concepts
    ImageMean,
    compute_image_mean,
    load_image_mean,
    save_image_mean,
)
from splice_desktop.core.progress import CancelToken, ProgressFn, check, report
from splice_desktop.core.vocab import Vocabulary

# Bump when the recipe or file layout changes, so stale caches are ignored rather than misread.
VERSION = 1
CACHE_KIND = "concepts"
ENCODE_BATCH = 256


@dataclass(frozen=True, eq=False)
class ConceptBank:
    """Centred unit concept embeddings ``matrix`` (k, d) float32, row i = ``vocabulary.words[i]``."""

    vocabulary: Vocabulary
    matrix: np.ndarray
    concept_mean: np.ndarray
    model_key: str
    from_cache: bool = field(default=False, compare=False)

    @property
    def words(self) -> tuple[str, ...]:
        return self.vocabulary.words

    def index(self, word: str) -> int:
        return self.vocabulary.index(word)

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


def center_concepts(raw_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """normalise -> subtract the concept mean -> normalise; returns (C float32 C-contiguous, mean (d,) float32).

    Rows are normalised first even if the caller already did (cheap, and makes the mean the authors' mean).
    A row equal to the mean (only possible for a one-concept vocabulary) stays zero instead of becoming NaN.
    """
    raw = np.asarray(raw_unit, dtype=np.float32)
    if raw.ndim != 2 or raw.shape[0] == 0:
        raise ValueError(f"center_concepts needs a non-empty (k, d) matrix, got shape {raw.shape}")
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    unit = raw / np.maximum(norms, np.float32(1e-12))
    mean = unit.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = unit - mean
    cnorms = np.linalg.norm(centred, axis=1, keepdims=True)
    centred /= np.maximum(cnorms, np.float32(1e-12))
    return np.ascontiguousarray(centred, dtype=np.float32), mean


def concept_cache_path(model_key: str, vocabulary_sha256: str) -> Path:
    """``cache_dir("concepts")/{model_key}-{sha[:16]}-v{VERSION}.npy`` (model_key already holds the weights hash)."""
    return cache_dir(CACHE_KIND) / f"{safe_name(model_key)}-{vocabulary_sha256[:16]}-v{VERSION}.npy"


def _read_cache(path: Path, k: int, d: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Memory-map a cache file (k concept rows + the mean row); None, so it is rebuilt, if unusable."""
    data = load_npy_mmap(path, (k + 1, d))
    if data is None:
        return None
    return data[:k], np.array(data[k])


def is_cached(loaded: Any, vocabulary: Vocabulary) -> bool:
    """Whether ``build_concept_bank`` would read this bank from disk (the GUI can skip the progress dialog)."""
    path = concept_cache_path(loaded.key, vocabulary.sha256)
    return _read_cache(path, len(vocabulary), int(loaded.embed_dim)) is not None


def build_concept_bank(
    loaded: Any,
    vocabulary: Vocabulary,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
    use_cache: bool = True,
    batch_size: int = ENCODE_BATCH,
) -> ConceptBank:
    """Encode (or load from cache) and centre the vocabulary for ``loaded``.

    ``use_cache=False`` neither reads nor writes the cache (a fresh in-memory bank). Raises CancelledError when
    cancelled (nothing is written), VocabularyError for a vocabulary too small to centre.
    """
    k, d = len(vocabulary), int(loaded.embed_dim)
    if k < 2:
        raise VocabularyError(
            f"Vocabulary {vocabulary.source} has {k} concept(s); centring on the concept mean needs at least 2."
        )
    check(cancel)
    path = concept_cache_path(loaded.key, vocabulary.sha256)
    if use_cache:
        hit = _read_cache(path, k, d)
        if hit is not None:
            report(progress, k, k, "Concept embeddings loaded from cache")
            return ConceptBank(vocabulary, hit[0], hit[1], loaded.key, from_cache=True)

    from splice_desktop.core.text_encoder import encode_texts

    raw = encode_texts(loaded, list(vocabulary.words), batch_size=batch_size, progress=progress, cancel=cancel)
    check(cancel)
    matrix, mean = center_concepts(raw)
    if use_cache:
        atomic_save_npy(path, np.concatenate([matrix, mean[None, :]], axis=0))
    report(progress, k, k, "Concept embeddings ready")
    matrix.setflags(write=False)
    return ConceptBank(vocabulary, matrix, mean, loaded.key, from_cache=False)
