"""SpLiCE decomposition of one image embedding: centring, sparse solve, recomposition, edits.

Follows the authors' code (see ../shared/ref/splice/REPORT.md §3):

* ``z_tilde = normalize(z - mu_img)`` (the image mean is *not* renormalised);
* ``w = argmin_{w>=0} ||C^T w - z_tilde||^2 + lam ||w||_1`` (core.solvers);
* ``z_hat = normalize(normalize(C^T w) + mu_img)`` - the scale of ``w`` is discarded;
* the authors' intervention zeroes weights and recomposes without re-solving ("zero" mode). We also offer
  "resolve": solve again at the same lambda with the removed concepts excluded, so the others compensate.

Two cosines are reported because the raw one (z vs z_hat) is inflated by the mean: the centred cosine
compares ``C^T w`` with ``z_tilde`` directly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Optional

import numpy as np

from splice_desktop.core.errors import SpliceError
from splice_desktop.core.progress import CancelToken, check

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps the import cheap
    from splice_desktop.core.concepts import ConceptBank
    from splice_desktop.core.image_mean import ImageMean
    from splice_desktop.core.solvers import LassoPath

EditMode = Literal["zero", "resolve"]
EDIT_MODES: tuple[str, ...] = ("zero", "resolve")
PATH_CACHE_SIZE = 8
# Default floor of Decomposer.path, as a fraction of lambda_max. The authors' lambdas (0.15-0.35) sit well above
# 0.1 * lambda_max on real images; going lower makes the path long (hundreds of knots as l0 approaches d; see
# benchmarks/README.md), and decompose() below the floor falls back to an exact single solve anyway.
PATH_MIN_RATIO = 0.1


class EditError(SpliceError):
    """An edit cannot be applied (unknown concept, invalid scale or mode)."""


class UnknownConceptError(EditError):
    """An edit names a concept that is not in the vocabulary of the current concept bank."""


class LambdaTooSmallError(SpliceError):
    """The exact solution at this lambda would need more active concepts than embedding dimensions."""


def _solve(
    C: np.ndarray, z_tilde: np.ndarray, lam: float, exclude: Optional[np.ndarray] = None
) -> tuple[np.ndarray, float]:
    """(weights, lambda_max) from one exact solve, with the solver's "too many active concepts" ValueError turned
    into a user-facing error."""
    from splice_desktop.core.solvers import solve_with_lambda_max

    try:
        w, lmax = solve_with_lambda_max(C, z_tilde, lam, exclude=exclude)
        return np.asarray(w, dtype=np.float32), lmax
    except ValueError as exc:
        raise LambdaTooSmallError(
            f"lambda {lam:.4g} is too small for this concept bank ({C.shape[0]} concepts, {C.shape[1]} dimensions): "
            f"the solution would need more than {C.shape[1]} concepts. Choose a larger lambda. ({exc})"
        ) from None


# ----------------------------------------------------------------------------------------------- helpers


def _mean_vector(image_mean: Any) -> Optional[np.ndarray]:
    """Accept an ImageMean, a raw vector or None; return the float32 vector or None when absent."""
    if image_mean is None:
        return None
    if isinstance(image_mean, np.ndarray):
        return np.asarray(image_mean, dtype=np.float32).reshape(-1)
    vector = getattr(image_mean, "vector", None)
    if vector is None:
        return None
    return np.asarray(vector, dtype=np.float32).reshape(-1)


def _normalize(v: np.ndarray) -> np.ndarray:
    """L2-normalise; the zero vector stays zero (like torch.nn.functional.normalize)."""
    norm = float(np.linalg.norm(v))
    if norm <= 1e-12:
        return np.zeros_like(v, dtype=np.float32)
    return (v / norm).astype(np.float32, copy=False)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na = float(np.linalg.norm(a))
    nb = float(np.linalg.norm(b))
    if na <= 1e-12 or nb <= 1e-12:
        return 0.0
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)) / (na * nb))


def center_image(z: np.ndarray, image_mean: Any = None) -> np.ndarray:
    """``normalize(z - mu_img)`` as the authors do; without a mean just ``normalize(z)``. float32 (d,)."""
    z = np.asarray(z, dtype=np.float32).reshape(-1)
    mu = _mean_vector(image_mean)
    if mu is None:
        return _normalize(z)
    if mu.shape != z.shape:
        raise ValueError(f"image mean has {mu.shape[0]} dimensions but the embedding has {z.shape[0]}")
    return _normalize(z - mu)


def recompose(w: np.ndarray, C: np.ndarray, image_mean: Any = None) -> np.ndarray:
    """``normalize(normalize(C^T w) + mu_img)`` (authors' ``recompose_image``). float32 (d,).

    With w = 0 this is ``normalize(mu_img)`` (normalize(0) = 0), and the zero vector when there is no mean.
    """
    w = np.asarray(w, dtype=np.float32).reshape(-1)
    nz = np.flatnonzero(w)
    d = C.shape[1]
    if nz.size:
        # Only the active rows: l0 is small, so this avoids touching the whole (k, d) matrix.
        part = _normalize(w[nz] @ np.asarray(C[nz], dtype=np.float32))
    else:
        part = np.zeros(d, dtype=np.float32)
    mu = _mean_vector(image_mean)
    if mu is not None:
        part = part + mu
    return _normalize(part)


def _sparse_dot(w: np.ndarray, C: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(w)
    if not nz.size:
        return np.zeros(C.shape[1], dtype=np.float32)
    return (w[nz] @ np.asarray(C[nz], dtype=np.float32)).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EditState:
    """What the user changed: concepts removed, per-concept weight scales, and how removal is applied."""

    removed: frozenset[str] = frozenset()
    scales: Mapping[str, float] = field(default_factory=dict)
    mode: str = "zero"

    def __post_init__(self) -> None:
        object.__setattr__(self, "removed", frozenset(self.removed))
        object.__setattr__(self, "scales", {str(k): float(v) for k, v in dict(self.scales).items()})
        if self.mode not in EDIT_MODES:
            raise EditError(f"Unknown edit mode {self.mode!r}; use one of {', '.join(EDIT_MODES)}.")
        for name, scale in self.scales.items():
            if not np.isfinite(scale) or scale < 0:
                raise EditError(f"Scale for concept {name!r} must be a finite number >= 0 (got {scale}).")

    @property
    def is_empty(self) -> bool:
        """True when applying it changes nothing (no removals, every scale 1)."""
        return not self.removed and all(s == 1.0 for s in self.scales.values())

    def names(self) -> set[str]:
        return set(self.removed) | set(self.scales)

    def to_dict(self) -> dict[str, Any]:
        return {"removed": sorted(self.removed), "scales": dict(sorted(self.scales.items())), "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EditState":
        return cls(
            removed=frozenset(data.get("removed", ())),
            scales=dict(data.get("scales", {})),
            mode=str(data.get("mode", "zero")),
        )


NO_EDITS = EditState()


@dataclass(frozen=True, eq=False)
class Decomposition:
    """One sparse decomposition (possibly edited). Arrays are read-only so results can be shared across threads.

    ``mode`` says what is shown: "original" (plain solve), "zero" (authors' intervention: weights zeroed or
    scaled, no re-solve) or "resolve" (re-solved without the removed concepts, then scaled).
    """

    words: tuple[str, ...]
    weights: np.ndarray
    dense: np.ndarray
    lam: float
    lambda_max: float
    l0: int
    cosine: float
    centred_cosine: float
    z_hat: np.ndarray
    image_mean_present: bool
    edits: EditState = NO_EDITS
    mode: str = "original"

    def top(self, n: Optional[int] = None) -> list[tuple[str, float]]:
        """The n largest (concept, weight) pairs, largest first (all active ones when n is None)."""
        count = len(self.words) if n is None else max(0, int(n))
        return [(w, float(x)) for w, x in zip(self.words[:count], self.weights[:count])]

    def weight_of(self, word: str) -> float:
        """Weight of one concept (0.0 when inactive)."""
        try:
            return float(self.weights[self.words.index(word)])
        except ValueError:
            return 0.0

    def to_dict(self, include_dense: bool = False) -> dict[str, Any]:
        """Plain JSON-able data (floats, ints, strings, lists)."""
        out: dict[str, Any] = {
            "concepts": [{"concept": w, "weight": float(x)} for w, x in zip(self.words, self.weights)],
            "lambda": float(self.lam),
            "lambda_max": float(self.lambda_max),
            "l0": int(self.l0),
            "cosine": float(self.cosine),
            "centred_cosine": float(self.centred_cosine),
            "image_mean_present": bool(self.image_mean_present),
            "mode": self.mode,
            "edits": self.edits.to_dict(),
        }
        if include_dense:
            out["dense"] = [float(x) for x in self.dense]
            out["z_hat"] = [float(x) for x in self.z_hat]
        return out


def _covers(path: "LassoPath", lam_min_ratio: float) -> bool:
    """Whether ``path`` reaches down to ``lam_min_ratio * lambda_max`` (or can never go lower)."""
    if getattr(path, "stop_reason", "") in ("rank", "zero"):
        return True
    return float(path.lam_min) <= lam_min_ratio * float(path.lambda_max) * (1 + 1e-9) + 1e-15


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# ----------------------------------------------------------------------------------------------- decomposer


class Decomposer:
    """Decomposes embeddings over one concept bank with one image mean.

    Holds a small LRU of exact lasso paths keyed by the embedding's bytes, so moving the lambda slider on an
    image already seen is a lookup, and switching between a few images does not recompute their paths.
    """

    def __init__(self, bank: "ConceptBank", image_mean: "ImageMean | np.ndarray | None" = None,
                 path_cache_size: int = PATH_CACHE_SIZE) -> None:
        self.bank = bank
        self.image_mean = image_mean
        self._mu = _mean_vector(image_mean)
        self._C = np.ascontiguousarray(bank.matrix, dtype=np.float32)
        if self._mu is not None and self._mu.shape[0] != self._C.shape[1]:
            raise ValueError(
                f"image mean has {self._mu.shape[0]} dimensions but the concept bank has {self._C.shape[1]}"
            )
        from splice_desktop.core.solvers import prepare_dictionary

        self.solver_backend = prepare_dictionary(self._C)
        self._words: tuple[str, ...] = tuple(bank.words)
        self._index = {w: i for i, w in enumerate(self._words)}
        self._paths: "OrderedDict[bytes, LassoPath]" = OrderedDict()
        self._path_cache_size = max(0, int(path_cache_size))
        self._lock = threading.Lock()

    @property
    def matrix(self) -> np.ndarray:
        return self._C

    @property
    def words(self) -> tuple[str, ...]:
        return self._words

    @property
    def image_mean_present(self) -> bool:
        return self._mu is not None

    def center(self, z: np.ndarray) -> np.ndarray:
        return center_image(z, self._mu)

    def lambda_max(self, z: np.ndarray) -> float:
        """Smallest lambda at which every weight is zero (the natural top of a slider)."""
        from splice_desktop.core.solvers import lambda_max

        return float(lambda_max(self._C, self.center(z)))

    def _key(self, z: np.ndarray) -> bytes:
        return np.ascontiguousarray(z, dtype=np.float32).tobytes()

    def path(self, z: np.ndarray, cancel: Optional[CancelToken] = None,
             lam_min_ratio: float = PATH_MIN_RATIO) -> "LassoPath":
        """The exact lasso path for z from lambda_max down to ``lam_min_ratio * lambda_max`` (cached, LRU).

        A cached path is reused when it already reaches that low (or ended for good: active set = d).
        """
        from splice_desktop.core.solvers import compute_path

        key = self._key(z)
        with self._lock:
            cached = self._paths.get(key)
            if cached is not None and _covers(cached, lam_min_ratio):
                self._paths.move_to_end(key)
                return cached
        check(cancel)
        result = compute_path(self._C, self.center(z), lam_min_ratio=lam_min_ratio, cancel=cancel)
        if self._path_cache_size:
            with self._lock:
                self._paths[key] = result
                self._paths.move_to_end(key)
                while len(self._paths) > self._path_cache_size:
                    self._paths.popitem(last=False)
        return result

    def cached_path(self, z: np.ndarray) -> "LassoPath | None":
        """The cached path for z, or None (never computes)."""
        with self._lock:
            return self._paths.get(self._key(z))

    def _indices(self, names: Iterable[str]) -> list[int]:
        unknown = sorted(n for n in names if n not in self._index)
        if unknown:
            shown = ", ".join(repr(n) for n in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise UnknownConceptError(
                f"Unknown concept(s) {shown}{more}: not in the current vocabulary "
                f"({len(self._words)} concepts). Check the spelling or choose a vocabulary that contains them."
            )
        return [self._index[n] for n in names]

    def _result(self, z: np.ndarray, z_tilde: np.ndarray, w: np.ndarray, lam: float, lmax: float,
                edits: EditState, mode: str) -> Decomposition:
        w = np.asarray(w, dtype=np.float32).reshape(-1).copy()
        w[w < 0] = 0.0  # solvers return >= 0; guard against -0.0 / round-off from scaling
        nz = np.flatnonzero(w)
        order = nz[np.argsort(-w[nz], kind="stable")]
        z_hat = recompose(w, self._C, self._mu)
        z_unit = _normalize(np.asarray(z, dtype=np.float32).reshape(-1))
        return Decomposition(
            words=tuple(self._words[i] for i in order),
            weights=_readonly(w[order].copy()),
            dense=_readonly(w),
            lam=float(lam),
            lambda_max=float(lmax),
            l0=int(nz.size),
            cosine=_cosine(z_unit, z_hat),
            centred_cosine=_cosine(_sparse_dot(w, self._C), z_tilde),
            z_hat=_readonly(z_hat),
            image_mean_present=self._mu is not None,
            edits=edits,
            mode=mode,
        )

    def decompose(self, z: np.ndarray, lam: float, path: "LassoPath | None" = None) -> Decomposition:
        """Solve at ``lam`` (a lookup on ``path`` when given, else an exact active-set solve)."""
        lam = float(lam)
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"lambda must be a finite number >= 0 (got {lam})")
        z_tilde = self.center(z)
        if path is not None and lam >= float(path.lam_min):
            w = path.weights_at(lam)
            lmax = float(path.lambda_max)
        elif path is not None and getattr(path, "stop_reason", "") == "rank":
            raise LambdaTooSmallError(
                f"lambda {lam:.4g} is too small for this concept bank: below {path.lam_min:.4g} the solution would "
                f"need more than {self._C.shape[1]} concepts. Choose a larger lambda."
            )
        elif path is not None:  # below where this path stops: an exact single solve instead
            lmax = float(path.lambda_max)
            w = _solve(self._C, z_tilde, lam)[0] if lam < lmax else np.zeros(self._C.shape[0], dtype=np.float32)
        else:
            w, lmax = _solve(self._C, z_tilde, lam)  # zero weights when lam >= lambda_max
        return self._result(z, z_tilde, w, lam, lmax, NO_EDITS, "original")

    def edit(self, z: np.ndarray, base: Decomposition, edits: EditState | None = None, *,
             removed: Iterable[str] | None = None, scales: Mapping[str, float] | None = None,
             mode: str | None = None) -> Decomposition:
        """Apply ``edits`` to ``base`` (an unedited decomposition of the same z).

        "zero": multiply weights by their scales and zero the removed ones, then recompose (no re-solve).
        "resolve": re-solve at ``base.lam`` with the removed concepts excluded, then apply the scales.
        Keyword arguments build the EditState when ``edits`` is not given.
        """
        if edits is None:
            edits = EditState(removed=frozenset(removed or ()), scales=dict(scales or {}), mode=mode or "zero")
        if not base.edits.is_empty:
            # An EditState is the complete edit of the original; applying it on top of an edited result would
            # silently compound the scales.
            raise EditError("edit() needs the unedited decomposition as its base (got an already edited one).")
        removed_idx = self._indices(sorted(edits.removed))
        scale_idx = self._indices(list(edits.scales))
        z_tilde = self.center(z)
        if edits.mode == "resolve" and removed_idx:
            exclude = np.asarray(removed_idx, dtype=np.intp)
            if base.lam >= base.lambda_max:
                w = np.zeros(self._C.shape[0], dtype=np.float32)
            else:
                w = _solve(self._C, z_tilde, base.lam, exclude=exclude)[0].copy()
            w[exclude] = 0.0
        else:
            w = np.array(base.dense, dtype=np.float32)
            if removed_idx:
                w[np.asarray(removed_idx, dtype=np.intp)] = 0.0
        for name, i in zip(edits.scales, scale_idx):
            w[i] *= np.float32(edits.scales[name])
        mode_label = "original" if edits.is_empty else edits.mode
        return self._result(z, z_tilde, w, base.lam, base.lambda_max, edits, mode_label)
