"""Zero-shot classification of the original embedding, its SpLiCE recomposition and an edited recomposition.

Follows CLIP (and the SpLiCE zero-shot experiment): class text embeddings from the prompt "A photo of a {}." (or
OpenAI's 80-template ensemble: mean of the normalised prompt embeddings, renormalised), cosine logits scaled by the
model's ``logit_scale.exp()`` (100 for real CLIP), softmax over the class set. The text matrix is cached on disk per
(model key, class-set hash, prompt set hash, VERSION) because the ensemble over ImageNet is 80k prompts.

Softmax is invariant to a shared additive bias, so SigLIP-style ``logit_bias`` needs no special case for ranking.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from splice_desktop.core.cache import atomic_save_npy, cache_dir, load_npy_mmap, safe_name
from splice_desktop.core.errors import VocabularyError
from splice_desktop.core.progress import CancelToken, ProgressFn, check, report
from splice_desktop.core.vocab import clean_concept, content_sha256, decode_lines

VERSION = 1
CACHE_KIND = "zeroshot"
DEFAULT_PROMPT = "A photo of a {}."
CLIP_MAX_LOGIT_SCALE = 100.0
_CLASS_CHUNK = 64  # classes per encode call in ensemble mode (bounds memory to chunk x 80 prompts)


class ClassSetError(VocabularyError):
    """A class list is unusable (empty, a single class, unreadable)."""


@dataclass(frozen=True)
class ClassSet:
    """Class names in label order. Duplicates are allowed (ImageNet has two 'missile' and two 'sunglasses')."""

    names: tuple[str, ...]
    source: str
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if len(names) < 2:
            raise ClassSetError(
                f"Class list {self.source} has {len(names)} class(es); zero-shot needs at least two to compare."
            )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "sha256", content_sha256(names))

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"Class {name!r} is not in class list {self.source}.") from None


def imagenet_classes() -> ClassSet:
    """ImageNet-1k's 1000 class names as open_clip ships them (index = label)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return ClassSet(tuple(IMAGENET_CLASSNAMES), "ImageNet-1k")


def _split_names(lines: Sequence[str]) -> list[str]:
    """One class per line; a single non-blank line is split on commas ("dog, cat, bird"). Dedupes, keeps order."""
    nonblank = [clean_concept(line) for line in lines if clean_concept(line)]
    if len(nonblank) == 1 and "," in nonblank[0]:
        nonblank = [clean_concept(part) for part in nonblank[0].split(",") if clean_concept(part)]
    seen: set[str] = set()
    names = []
    for name in nonblank:
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def classes_from_text(text: str, source: str = "typed classes") -> ClassSet:
    """Classes typed by the user: one per line, or comma separated on a single line."""
    return ClassSet(tuple(_split_names(text.splitlines())), source)


def load_class_file(path: str | Path) -> ClassSet:
    """A UTF-8 text file of class names, one per line (or one comma-separated line)."""
    path = Path(path)
    return ClassSet(tuple(_split_names(decode_lines(path, what="Class list file"))), str(path))


def _template_strings(ensemble: bool, prompt: str) -> tuple[str, ...]:
    """Prompt templates as format strings with '{}' (open_clip ships the ensemble as lambdas)."""
    if ensemble:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        out = []
        for template in OPENAI_IMAGENET_TEMPLATES:
            out.append(template("{}") if callable(template) else str(template))
        return tuple(out)
    if "{}" not in prompt:
        raise ClassSetError(f"Prompt {prompt!r} must contain '{{}}' where the class name goes.")
    return (prompt,)


@dataclass(frozen=True)
class ClassShift:
    """One class in a comparison. ``p_edited`` is None without an edit; ``shift = p_edited - p_recomposed`` (else 0)."""

    name: str
    p_original: float
    p_recomposed: float
    p_edited: Optional[float]
    shift: float
    index: int = -1
    rank_original: int = 0  # 1 = top prediction
    rank_recomposed: int = 0
    rank_edited: Optional[int] = None


@dataclass(frozen=True, eq=False)
class ZeroShotComparison:
    """Top-k union over original / recomposed / edited, plus the full probability vectors for further analysis."""

    rows: tuple[ClassShift, ...]
    k: int
    classes: ClassSet
    p_original: np.ndarray
    p_recomposed: np.ndarray
    p_edited: Optional[np.ndarray]
    meaningless: bool = False  # tiny random model: predictions carry no meaning

    @property
    def has_edit(self) -> bool:
        return self.p_edited is not None

    @property
    def shifts(self) -> np.ndarray:
        """Per-class p_edited - p_recomposed over the whole class set (sums to 0); zeros without an edit."""
        if self.p_edited is None:
            return np.zeros_like(self.p_recomposed)
        return self.p_edited - self.p_recomposed

    def top1(self, which: str = "original") -> str:
        probs = {"original": self.p_original, "recomposed": self.p_recomposed, "edited": self.p_edited}[which]
        if probs is None:
            raise ValueError("There is no edited embedding in this comparison.")
        return self.classes.names[int(np.argmax(probs))]

    def to_rows(self) -> list[dict[str, Any]]:
        """Plain dicts for CSV/JSON (p_edited and rank_edited are None without an edit)."""
        return [
            {
                "class": r.name,
                "p_original": r.p_original,
                "p_recomposed": r.p_recomposed,
                "p_edited": r.p_edited,
                "shift": r.shift,
                "rank_original": r.rank_original,
                "rank_recomposed": r.rank_recomposed,
                "rank_edited": r.rank_edited,
            }
            for r in self.rows
        ]


def _ranks(probs: np.ndarray) -> np.ndarray:
    order = np.argsort(-probs, kind="stable")
    ranks = np.empty(len(probs), dtype=np.int64)
    ranks[order] = np.arange(1, len(probs) + 1)
    return ranks


def _unit_rows(Z: np.ndarray, what: str, dim: int) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float32)
    if Z.ndim == 1:
        Z = Z[None, :]
    if Z.ndim != 2 or Z.shape[1] != dim:
        raise ValueError(f"{what} must have shape (m, {dim}) or ({dim},), got {np.shape(Z)}")
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.maximum(norms, np.float32(1e-12))


class ZeroShotHead:
    """Class text embeddings for one model and class set; the matrix is built lazily (see ``prepare``)."""

    def __init__(
        self,
        loaded: Any,
        classes: ClassSet,
        ensemble: bool = False,
        prompt: str = DEFAULT_PROMPT,
        use_cache: bool = True,
        batch_size: int = 256,
    ) -> None:
        self.loaded = loaded
        self.classes = classes
        self.ensemble = ensemble
        self.templates = _template_strings(ensemble, prompt)
        self.use_cache = use_cache
        self.batch_size = batch_size
        self.from_cache = False
        self._matrix: Optional[np.ndarray] = None
        self.logit_scale = self._logit_scale(loaded.model)

    @staticmethod
    def _logit_scale(model: Any) -> float:
        scale = getattr(model, "logit_scale", None)
        if scale is None:
            return CLIP_MAX_LOGIT_SCALE
        value = float(np.exp(float(scale.detach().float().cpu().reshape(-1)[0])))
        return min(value, CLIP_MAX_LOGIT_SCALE)  # CLIP clamps the learned scale at 100

    @property
    def prompt_mode(self) -> str:
        return "ensemble" if self.ensemble else "single"

    @property
    def cache_path(self) -> Path:
        templates_sha = hashlib.sha256("\n".join(self.templates).encode("utf-8")).hexdigest()
        name = (
            f"{safe_name(self.loaded.key)}-{self.classes.sha256[:16]}-{self.prompt_mode}-{templates_sha[:12]}"
            f"-v{VERSION}.npy"
        )
        return cache_dir(CACHE_KIND) / name

    def _read_cache(self) -> Optional[np.ndarray]:
        return load_npy_mmap(self.cache_path, (len(self.classes), int(self.loaded.embed_dim)))

    def _encode(self, progress: Optional[ProgressFn], cancel: Optional[CancelToken]) -> np.ndarray:
        from splice_desktop.core.text_encoder import encode_texts

        names = self.classes.names
        n, t = len(names), len(self.templates)
        out = np.empty((n, int(self.loaded.embed_dim)), dtype=np.float32)
        chunk = n if t == 1 else max(1, _CLASS_CHUNK)
        total = n * t
        for start in range(0, n, chunk):
            check(cancel)
            part = names[start : start + chunk]
            texts = [template.format(name) for name in part for template in self.templates]
            done0 = start * t

            def _sub(done: int, _total: int, message: str, base: int = done0) -> None:
                report(progress, base + done, total, "Encoding class prompts")

            emb = encode_texts(self.loaded, texts, batch_size=self.batch_size, progress=_sub, cancel=cancel)
            emb = emb.reshape(len(part), t, -1).mean(axis=1)
            out[start : start + len(part)] = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return out

    def prepare(self, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> np.ndarray:
        """Build (or load) the text matrix now, with progress and cancellation; later calls return it at once."""
        if self._matrix is not None:
            return self._matrix
        check(cancel)
        if self.use_cache:
            cached = self._read_cache()
            if cached is not None:
                self._matrix, self.from_cache = cached, True
                report(progress, len(self.classes), len(self.classes), "Class prompts loaded from cache")
                return cached
        matrix = self._encode(progress, cancel)
        if self.use_cache:
            atomic_save_npy(self.cache_path, matrix)
        matrix.setflags(write=False)
        self._matrix = matrix
        return matrix

    @property
    def text_matrix(self) -> np.ndarray:
        """(n, d) float32 unit rows, one per class."""
        return self.prepare()

    def logits(self, Z: np.ndarray) -> np.ndarray:
        Zu = _unit_rows(Z, "Z", int(self.loaded.embed_dim))
        return (Zu @ self.text_matrix.T).astype(np.float64) * self.logit_scale

    def probabilities(self, Z: np.ndarray) -> np.ndarray:
        """Softmax over classes of scaled cosines: (m, d) -> (m, n); a single (d,) vector gives (n,)."""
        single = np.ndim(Z) == 1
        logits = self.logits(Z)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs[0] if single else probs

    def compare(
        self,
        original: np.ndarray,
        recomposed: np.ndarray,
        edited: Optional[np.ndarray] = None,
        k: int = 5,
    ) -> ZeroShotComparison:
        """Rows for the union of each embedding's top-k classes, sorted by the latest stage's probability
        (edited if given, else recomposed), ties by the original's."""
        stack = [original, recomposed] + ([edited] if edited is not None else [])
        rows_in = [np.asarray(v, dtype=np.float32).reshape(-1) for v in stack]
        probs = self.probabilities(np.stack(rows_in))
        p_o, p_r = probs[0], probs[1]
        p_e = probs[2] if edited is not None else None
        k = max(1, min(int(k), len(self.classes)))
        ranks_o, ranks_r = _ranks(p_o), _ranks(p_r)
        ranks_e = _ranks(p_e) if p_e is not None else None
        chosen: set[int] = set()
        for ranks in (ranks_o, ranks_r, ranks_e):
            if ranks is not None:
                chosen.update(np.flatnonzero(ranks <= k).tolist())
        latest = p_e if p_e is not None else p_r
        order = sorted(chosen, key=lambda i: (-latest[i], -p_o[i], i))
        rows = tuple(
            ClassShift(
                name=self.classes.names[i],
                p_original=float(p_o[i]),
                p_recomposed=float(p_r[i]),
                p_edited=None if p_e is None else float(p_e[i]),
                shift=0.0 if p_e is None else float(p_e[i] - p_r[i]),
                index=int(i),
                rank_original=int(ranks_o[i]),
                rank_recomposed=int(ranks_r[i]),
                rank_edited=None if ranks_e is None else int(ranks_e[i]),
            )
            for i in order
        )
        return ZeroShotComparison(
            rows=rows,
            k=k,
            classes=self.classes,
            p_original=p_o,
            p_recomposed=p_r,
            p_edited=p_e,
            meaningless=bool(getattr(self.loaded, "meaningless", False)),
        )

