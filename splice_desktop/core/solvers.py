"""Exact non-negative lasso for SpLiCE: ``min_{w>=0} ||C^T w - z||^2 + lam * ||w||_1``.

Same minimiser as ``sklearn.linear_model.Lasso(positive=True, alpha=lam/(2d), fit_intercept=False)`` on
``X = C.T, y = z``. ``C`` is (k, d) float32 with unit rows, ``z`` is (d,) float32 unit.

Why a homotopy (positive LARS-lasso) and not coordinate descent (sklearn, the reference default) or ADMM:
- The GUI has a lambda slider. The solution path ``w(lam)`` is piecewise linear in ``lam`` with a finite number
  of knots (a concept enters when its correlation ``2 <c_j, r>`` rises to ``lam``, r = z - C^T w; it leaves when
  its weight reaches 0). Computing the knots once per image makes every slider position an exact linear
  interpolation, answered in O(nnz) without re-solving, and "choose lambda for l0 = n" comes for free.
- Between knots the solution on the active set ``A`` is closed form, ``w_A = G_AA^{-1}(C_A z - lam/2 * 1)``, so the
  result is exact up to float64 rounding on an |A| x |A| system, not up to an iterative tolerance (sklearn stops
  on a duality gap, the reference ADMM on an absolute residual of 1e-6 and up to 2000 iterations).
- At SpLiCE's typical lambdas only ~10 concepts are active, so one lambda from cold is ~10 knots: cheaper than
  even one pass of coordinate descent to convergence.

One lambda from cold (``solve_positive_lasso``): two passes over C. The first ranks all concepts by their
correlation with z (and gives lambda_max); the homotopy runs in Gram space on the top ~128 (no d-dimensional work
per knot except one Gram row when a concept enters); the second pass checks the KKT conditions on every inactive
concept. Violators join the working set and the homotopy is rerun; many active concepts (small lambdas) hand
over to the row-space engine below. Both passes are memory-bound; after ``prepare_dictionary(C)`` they read a
float16 copy of C when that is faster on this machine (``half_products``: proven error bound, float64 re-checks
of everything within it).

The whole path (``compute_path``), and how it stays fast and exact on 10k-15k concepts:
- Working set: the homotopy runs on the concepts most correlated with z (``_M0_*``). Every few knots their
  residuals are checked against *all* concepts in one (k, d) x (d, knots) float32 product. Between two knots both
  a concept's correlation and lambda are linear in lambda, so "corr_j <= lambda at every knot" proves nothing
  outside the working set should have entered; at the first knot where something should have, the path is
  rewound there and the violators join the working set. For one lambda only the final KKT check is needed.
- Active-set algebra in float64 on the |A| active rows only: Gram G_AA, its inverse by bordered (Schur) updates
  in O(|A|^2) per event, one step of iterative refinement against the exact G each knot, and a rebuild every
  ``_REFRESH`` updates. The k x k Gram is never formed and ``C`` is never cast to float64.
- Float32 correlations decide *which* event comes next; the few closest candidates are re-evaluated in float64,
  so near-ties that float32 cannot separate are still ordered correctly. Rows in the span of the active rows
  (duplicate concepts) are skipped rather than stopping the path; it stops ("rank") only if |A| would exceed d.
- Inputs must be finite (a NaN row would poison every product; the concept bank guarantees unit rows).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from splice_desktop.core import half_products
from splice_desktop.core.progress import CancelToken, ProgressFn, check, report

__all__ = [
    "lambda_max",
    "objective",
    "solve_positive_lasso",
    "solve_with_lambda_max",
    "prepare_dictionary",
    "compute_path",
    "LassoPath",
    "admm_reference",
    "kkt_violation",
]

_F32 = np.float32
_F64 = np.float64
_NO_INDEX = np.empty(0, dtype=np.int64)
# Candidates re-evaluated in float64 when picking the next entering concept.
_REFINE = 8
_AMBIG = 2e-5  # float32 correlation error bound; closer calls are decided in float64
# Initial working-set sizes (concepts most correlated with z) for one lambda and for a whole path.
_M0_SOLVE = 256
_M0_PATH = 512
# One lambda from cold: working set solved in Gram space, the most concepts active at once there, and rounds of
# "add the violators and rerun" before handing over to the row-space engine.
_M0_GRAM = 128
_GRAM_CAP = 96
_GRAM_ROUNDS = 3
# Knots between checks against the concepts outside the working set.
_CHUNK = 32
_CHUNK_MIN, _CHUNK_MAX = 16, 64
# Concepts closest to entering that join the working set after each clean check.
_LOOKAHEAD = 64
# Updates of the active-set inverse between rebuilds, and knots between exact recomputations of correlations.
_REFRESH = 128
_CORR_REFRESH = 16


def _as_inputs(C: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and get float32 C-contiguous views without copying when already right."""
    C = np.asarray(C)
    z = np.asarray(z)
    if C.ndim != 2:
        raise ValueError(f"C must be a (k, d) matrix, got shape {C.shape}")
    if z.shape != (C.shape[1],):
        raise ValueError(f"z must have shape ({C.shape[1]},) to match C {C.shape}, got {z.shape}")
    if C.dtype != _F32 or not C.flags.c_contiguous:
        C = np.ascontiguousarray(C, dtype=_F32)
    return C, np.ascontiguousarray(z, dtype=_F32)


def _exclude_mask(k: int, exclude: Optional[Iterable[int]]) -> Optional[np.ndarray]:
    if exclude is None:
        return None
    idx = np.fromiter((int(i) for i in exclude), dtype=np.int64)
    if idx.size == 0:
        return None
    if idx.min() < -k or idx.max() >= k:
        raise ValueError(f"exclude contains an index outside [0, {k})")
    mask = np.zeros(k, dtype=bool)
    mask[idx] = True
    return mask


def _top_corr(C: np.ndarray, z: np.ndarray, corr: np.ndarray, tol: float = 0.25 * _AMBIG) -> tuple[int, float]:
    """(argmax_j, 2 <c_j, z>) with the maximum decided in float64 among near-ties.

    ``corr``: approximate products ``C @ z`` (excluded concepts -inf, at least one finite), each within ``tol``
    of the exact value (float32 by default; the float16 backend passes its own bound)."""
    top = float(np.max(corr))
    near = np.flatnonzero(corr >= top - 2.0 * tol)
    vals = 2.0 * (C[near].astype(_F64) @ z.astype(_F64))
    i = int(np.argmax(vals))
    return int(near[i]), float(vals[i])


def lambda_max(C: np.ndarray, z_tilde: np.ndarray) -> float:
    """Smallest lambda whose solution is all zeros: ``2 max_j <c_j, z>`` clipped at 0 (float64 at the top)."""
    C, z = _as_inputs(C, z_tilde)
    if C.shape[0] == 0:
        return 0.0
    return max(0.0, _top_corr(C, z, C @ z)[1])


def objective(C: np.ndarray, z_tilde: np.ndarray, w: np.ndarray, lam: float) -> float:
    """``||C^T w - z||^2 + lam * ||w||_1`` evaluated in float64 (for tests and benchmarks)."""
    w64 = np.asarray(w, dtype=_F64)
    nz = np.flatnonzero(w64)
    r = np.asarray(C, dtype=_F32)[nz].astype(_F64).T @ w64[nz] - np.asarray(z_tilde, dtype=_F64)
    return float(r @ r + lam * np.abs(w64).sum())


def kkt_violation(C: np.ndarray, z_tilde: np.ndarray, w: np.ndarray, lam: float) -> float:
    """Largest violation of the positive-lasso KKT conditions, in correlation units (0 = optimal).

    Active (w_j > 0): ``2 <c_j, r> = lam``; inactive: ``2 <c_j, r> <= lam``; with ``r = z - C^T w``.
    """
    w64 = np.asarray(w, dtype=_F64)
    if np.any(w64 < 0):
        return float(-w64.min())
    nz = np.flatnonzero(w64)
    C32 = np.asarray(C, dtype=_F32)
    r = np.asarray(z_tilde, dtype=_F64) - C32[nz].astype(_F64).T @ w64[nz]
    corr = 2.0 * (C32.astype(_F64) @ r)
    active = np.zeros(C32.shape[0], dtype=bool)
    active[nz] = True
    v_act = np.abs(corr[active] - lam).max() if nz.size else 0.0
    v_in = max(0.0, float((corr[~active] - lam).max())) if (~active).any() else 0.0
    return float(max(v_act, v_in))


# --------------------------------------------------------------------------------------------- homotopy engine


@dataclass
class _Segment:
    """One linear piece of the path: on [lam_lo, lam_hi] the weights of ``idx`` go linearly from hi to lo."""

    lam_hi: float
    lam_lo: float
    idx: np.ndarray  # int32 concept indices (the active set on this piece)
    w_hi: np.ndarray  # float32 weights at lam_hi (computed in float64; stored compactly: ~12 bytes per entry)
    w_lo: np.ndarray  # float32 weights at lam_lo


@dataclass
class _HomotopyResult:
    active: np.ndarray  # int64 global concept indices
    weights: np.ndarray  # float64, weights at lam_end
    lam_end: float
    lam_start: float  # lambda_max of the (non-excluded) dictionary
    stop_reason: str  # "target", "rank", "zero"
    segments: list[_Segment] = field(default_factory=list)


class _ActiveSet:
    """The active rows (float64), their Gram G, its inverse H and ``PQ = H [C_A z, 1]``, updated in O(n^2).

    Adding or removing a concept is a bordered-inverse (Schur complement) update, so a knot costs a few
    matrix-vector products instead of a factorisation; every few steps PQ gets one round of iterative refinement
    against G (exact G, so rounding in H cannot accumulate into the weights), and H is rebuilt from G every
    ``_REFRESH`` updates. The k x k Gram is never formed: G holds only the active concepts.
    """

    def __init__(self, d: int, cap: int) -> None:
        cap = max(1, cap)
        self.cap = cap
        self.pos: list[int] = []  # positions in the working set
        self.rows = np.empty((cap, d), dtype=_F64)
        self.G = np.empty((cap, cap), dtype=_F64)
        self.H = np.empty((cap, cap), dtype=_F64)
        self.BQ = np.ones((cap, 2), dtype=_F64)  # columns: C_A z, 1
        self.PQ = np.empty((cap, 2), dtype=_F64)  # H @ BQ
        self.updates = 0
        self.calls = 0

    @property
    def n(self) -> int:
        return len(self.pos)

    def reset(self, pos: list[int], rows64: np.ndarray, z64: np.ndarray, gram: Optional[np.ndarray]) -> bool:
        n = len(pos)
        self.pos = list(pos)
        self.rows[:n] = rows64
        self.G[:n, :n] = gram if gram is not None else rows64 @ rows64.T
        self.BQ[:n, 0] = rows64 @ z64
        return self.refresh()

    def refresh(self) -> bool:
        """Rebuild H and PQ from G (Cholesky); False if G is numerically singular."""
        n = self.n
        if n == 0:
            return True
        try:
            L = np.linalg.cholesky(self.G[:n, :n])
        except np.linalg.LinAlgError:
            return False
        Li = np.linalg.inv(L)
        self.H[:n, :n] = Li.T @ Li
        self.PQ[:n] = self.H[:n, :n] @ self.BQ[:n]
        self.updates = 0
        return True

    def refine(self) -> np.ndarray:
        """PQ (n, 2) = G^{-1} [C_A z, 1], with a step of iterative refinement every few calls (the bordered
        updates are exact in exact arithmetic; refinement keeps float64 rounding from accumulating)."""
        n = self.n
        if self.updates >= _REFRESH:
            self.refresh()
        PQ = self.PQ[:n]
        self.calls += 1
        if self.calls % 4 == 0:
            PQ += self.H[:n, :n] @ (self.BQ[:n] - self.G[:n, :n] @ PQ)
        return PQ

    def add(self, p: int, row64: np.ndarray, g: np.ndarray, gjj: float, z64: np.ndarray) -> bool:
        """Append working-set position p (row, Gram column g against the current members); False if dependent."""
        n = self.n
        if n >= self.cap:
            return False
        H = self.H[:n, :n]
        v = H @ g
        sch = gjj - float(g @ v)  # squared distance of the row from the span of the active rows
        if not sch > 1e-10 * max(gjj, 1e-300):
            return False
        bj = float(row64 @ z64)
        H += np.outer(v, v / sch)
        self.H[:n, n] = -v / sch
        self.H[n, :n] = -v / sch
        self.H[n, n] = 1.0 / sch
        self.G[:n, n] = g
        self.G[n, :n] = g
        self.G[n, n] = gjj
        xi = np.array([bj, 1.0])
        gp = g @ self.PQ[:n]
        self.PQ[:n] += np.outer(v, (gp - xi) / sch)
        self.PQ[n] = (xi - gp) / sch
        self.BQ[n, 0] = bj
        self.rows[n] = row64
        self.pos.append(p)
        self.updates += 1
        return True

    def remove(self, i: int) -> None:
        n = self.n
        h = self.H[:n, i].copy()
        hii = h[i]
        self.PQ[:n] -= np.outer(h, self.PQ[i] / hii)
        self.H[:n, :n] -= np.outer(h, h / hii)
        for M in (self.H, self.G):
            M[i : n - 1, :n] = M[i + 1 : n, :n].copy()
            M[: n - 1, i : n - 1] = M[: n - 1, i + 1 : n].copy()
        for M in (self.PQ, self.BQ, self.rows):
            M[i : n - 1] = M[i + 1 : n].copy()
        self.BQ[n - 1, 1] = 1.0
        del self.pos[i]
        self.updates += 1

    def exact(self) -> np.ndarray:
        """PQ accurate to rounding, for the final answer: one step of iterative refinement of the kept PQ against
        the exact G, or a fresh solve (~50 us of LAPACK call overhead at these sizes) if H has drifted."""
        n = self.n
        G, BQ = self.G[:n, :n], self.BQ[:n]
        PQ = self.PQ[:n]
        R = BQ - G @ PQ
        if np.abs(R).max() <= 1e-9 * (1.0 + np.abs(BQ).max()):
            return PQ + self.H[:n, :n] @ R
        return np.linalg.solve(G, BQ)


class _Engine:
    """Exact positive-lasso homotopy on a working set W of concepts (global indices), resumable and extendable.

    ``run`` follows the path downwards for a bounded number of knots; the caller verifies the new knots against
    the concepts outside W and, if one of them should have entered, calls ``rewind`` to the last good knot and
    ``extend`` W with the violators. Segments are recorded with global indices.
    """

    def __init__(self, C: np.ndarray, z: np.ndarray, W: np.ndarray, gram: Optional[np.ndarray]) -> None:
        self.C, self.z, self.z64 = C, z, z.astype(_F64)
        self.gram = gram
        self.d = C.shape[1]
        self.W = np.asarray(W, dtype=np.int64)
        self.CW = np.ascontiguousarray(C[self.W])
        self.act = _ActiveSet(self.d, min(self.d, C.shape[0]))
        self.in_act = np.zeros(self.W.size, dtype=bool)
        # Concepts whose row lies in the span of the active rows (e.g. duplicates): they cannot enter while the
        # active set is unchanged, and the minimiser does not need them (any split of weight is equally optimal).
        self.dependent = np.zeros(self.W.size, dtype=bool)
        self.corr: Optional[np.ndarray] = None  # float32 correlations 2 <c_j, r> on W at self.lam
        self.corr_age = 0
        self.just_dropped = -1
        self.segments: list[_Segment] = []
        self.residuals: list[np.ndarray] = []  # float64 residual at each segment's lam_lo
        self.stop_reason = ""
        self.done = False
        j0, self.lam = _top_corr(self.CW, z, self.CW @ z)
        self.lam_start = self.lam
        self._set_active([j0])

    def _gram_col(self, p: int, row64: np.ndarray) -> tuple[np.ndarray, float]:
        n = self.act.n
        if self.gram is not None:
            gi = self.W[p]
            g = np.asarray(self.gram[self.W[self.act.pos], gi], dtype=_F64) if n else np.empty(0)
            return g, float(self.gram[gi, gi])
        return self.act.rows[:n] @ row64, float(row64 @ row64)

    def _set_active(self, pos: list[int]) -> None:
        rows = self.CW[pos].astype(_F64)
        gram = self.gram[np.ix_(self.W[pos], self.W[pos])] if self.gram is not None else None
        if not self.act.reset(list(pos), rows, self.z64, gram):
            raise RuntimeError("degenerate active set (this is a bug; please report it)")
        self.in_act[:] = False
        self.in_act[pos] = True
        self.dependent[:] = False
        self.corr = None
        self.just_dropped = -1

    def extend(self, new: np.ndarray) -> None:
        """Append concepts (global indices) to W; positions of existing members do not change."""
        new = np.asarray(new, dtype=np.int64)
        if new.size == 0:
            return
        self.W = np.concatenate([self.W, new])
        self.CW = np.concatenate([self.CW, self.C[new]])
        self.in_act = np.concatenate([self.in_act, np.zeros(new.size, dtype=bool)])
        self.dependent = np.concatenate([self.dependent, np.zeros(new.size, dtype=bool)])
        self.corr = None

    def rewind(self, i: int) -> None:
        """Go back to the start of recorded segment i (its active set at its lam_hi)."""
        seg = self.segments[i]
        pos_of = {int(g): p for p, g in enumerate(self.W)}
        self.segments = self.segments[:i]
        self.residuals = self.residuals[:i]
        self.lam = seg.lam_hi
        self._set_active([pos_of[int(g)] for g in seg.idx])
        self.done = False
        self.stop_reason = ""

    def run(self, lam_stop: float, max_steps: int, cancel: Optional[CancelToken]) -> None:
        act, CW = self.act, self.CW
        for _ in range(max_steps):
            check(cancel)
            n = act.n
            PQ = act.refine()
            s = 0.5 * PQ[:, 1]  # dw_A / d(-lam)
            w = PQ[:, 0] - self.lam * s
            if self.lam <= lam_stop:
                self.done, self.stop_reason = True, "target"
                return
            rows = act.rows[:n]
            ws = rows.T @ np.stack([w, s], axis=1)
            r = self.z64 - ws[:, 0]
            u = ws[:, 1]
            slope = 2.0 * (CW @ u.astype(_F32))
            if self.corr is None or self.corr_age >= _CORR_REFRESH:
                self.corr = 2.0 * (CW @ r.astype(_F32))
                self.corr_age = 0
            corr = self.corr

            # Entering: corr_j - t * slope_j = lam - t  =>  t = (lam - corr_j) / (1 - slope_j), for slope_j < 1.
            denom = 1.0 - slope
            ok = denom > 1e-9
            ok &= ~(self.in_act | self.dependent)
            if self.just_dropped >= 0:
                ok[self.just_dropped] = False
            cand = np.flatnonzero(ok)
            j_in, t_enter = -1, np.inf
            if cand.size:
                den_c = denom[cand]
                t_c = (self.lam - corr[cand]) / den_c
                # Float32 cannot order near-ties: every candidate whose error interval (float32 correlations are
                # good to ~_AMBIG) overlaps the best one's, plus the _REFINE smallest, is decided in float64.
                eb = _AMBIG * (1.0 + np.abs(t_c)) / den_c
                close = np.flatnonzero(t_c - eb <= float(np.min(t_c + eb)))
                if close.size > 256:
                    close = close[np.argpartition((t_c - eb)[close], 255)[:256]]
                m = min(_REFINE, cand.size)
                top = np.argpartition(t_c, m - 1)[:m] if m < cand.size else np.arange(cand.size)
                best = cand[np.union1d(top, close)]
                rows_b = CW[best].astype(_F64)
                den64 = 1.0 - 2.0 * (rows_b @ u)
                good = den64 > 1e-12
                t64 = np.full(best.shape[0], np.inf)
                t64[good] = np.maximum((self.lam - 2.0 * (rows_b[good] @ r)) / den64[good], 0.0)
                pick = int(np.argmin(t64))
                if np.isfinite(t64[pick]):
                    j_in, t_enter = int(best[pick]), float(t64[pick])

            # Leaving: w_i + t * s_i = 0 for s_i < 0.
            neg = s < 0
            i_out, t_leave = -1, np.inf
            if neg.any():
                t_out = np.where(neg, -w / np.where(neg, s, -1.0), np.inf)
                i_out = int(np.argmin(t_out))
                t_leave = float(t_out[i_out])

            t_target = self.lam - lam_stop
            t = min(t_enter, t_leave, t_target)
            lam_lo = self.lam - t
            self.segments.append(
                _Segment(
                    self.lam,
                    lam_lo,
                    self.W[act.pos].astype(np.int32),
                    w.astype(_F32),
                    np.maximum(w + t * s, 0.0).astype(_F32),
                )
            )
            self.residuals.append(r - t * u)
            self.corr = corr - _F32(t) * slope
            self.corr_age += 1
            self.lam = lam_lo
            self.just_dropped = -1
            if t == t_target:
                self.lam = lam_stop
            elif t_leave <= t_enter:
                p = act.pos[i_out]
                act.remove(i_out)
                self.in_act[p] = False
                self.dependent[:] = False
                self.just_dropped = p
                if act.n == 0:  # cannot happen on a valid path; guard against a degenerate dictionary
                    self.done, self.stop_reason = True, "zero"
                    return
            else:
                row64 = CW[j_in].astype(_F64)
                g, gjj = self._gram_col(j_in, row64)
                if act.add(j_in, row64, g, gjj, self.z64):
                    self.in_act[j_in] = True
                elif act.n >= self.d:
                    self.done, self.stop_reason = True, "rank"
                    return
                else:
                    self.dependent[j_in] = True

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(global indices, float64 weights) at self.lam, from the active set's exact answer."""
        if self.act.n == 0:
            return np.empty(0, np.int64), np.empty(0)
        PQ = self.act.exact()
        w = PQ[:, 0] - self.lam * 0.5 * PQ[:, 1]
        return self.W[self.act.pos], np.maximum(w, 0.0)


def _first_violation(C: np.ndarray, eng: "_Engine", start: int, skip: np.ndarray) -> tuple[int, np.ndarray]:
    """First recorded knot (counted from ``start``) where a concept outside the working set exceeds the bound, and
    the concepts to add there (that knot's violators, then the worst later ones). ``len`` when there is none."""
    segs = eng.segments[start:]
    R = np.stack(eng.residuals[start:], axis=1)  # (d, n) float64
    lam_lo = np.array([s.lam_lo for s in segs])
    E = 2.0 * (C @ R.astype(_F32)) - lam_lo[None, :].astype(_F32)  # (k, n): > 0 means "should have entered"
    E[skip] = -np.inf
    clear_knots = np.flatnonzero((E > _AMBIG).any(axis=0))
    first = int(clear_knots[0]) if clear_knots.size else len(segs)
    # Float32 cannot decide |E| < _AMBIG: re-check those pairs (up to the first clear violation) in float64.
    aj, ai = np.nonzero(E[:, : first + 1] > -_AMBIG)
    if aj.size:
        c64 = 2.0 * np.einsum("ij,ji->i", C[aj].astype(_F64), R[:, ai])
        bad = c64 > lam_lo[ai] * (1 + 1e-9) + 1e-12
        if bad.any():
            first = min(first, int(ai[bad].min()))
    if first >= len(segs):
        # No violation: pre-load the outside concepts closest to the bound at the last knot (the likeliest next
        # entrants). Joining W while below the bound is always valid, and it saves rewinds later.
        last = E[:, -1]
        m = min(_LOOKAHEAD, int(np.isfinite(last).sum()))
        near = np.argpartition(-last, m - 1)[:m] if m > 0 else np.empty(0, np.int64)
        return first, near[np.isfinite(last[near])].astype(np.int64)
    Et = E[:, first:]
    new = np.flatnonzero(Et[:, 0] > -_AMBIG)
    score = Et.max(axis=1)
    later = np.flatnonzero(score > 0)
    later = later[np.argsort(-score[later])]
    cap = max(64, eng.W.size // 4)
    extra = later[~np.isin(later, new)][: max(0, cap - new.size)]
    return first, np.concatenate([new, extra]).astype(np.int64)


def _screened_homotopy(
    C: np.ndarray,
    z: np.ndarray,
    lam_stop: float,
    excluded: Optional[np.ndarray],
    cancel: Optional[CancelToken],
    gram: Optional[np.ndarray],
    m0: int,
    path: bool,
    progress: Optional[ProgressFn] = None,
) -> _HomotopyResult:
    """The exact path of the full dictionary, computed on a growing working set W.

    ``lam_stop`` is absolute for one lambda (``path=False``) and a fraction of lambda_max for a path.

    The homotopy runs on C[W] (cheap per knot). Every ``_CHUNK`` knots, the residuals at the new knots are checked
    against all concepts outside W in one (k, d) x (d, knots) product: between knots both a concept's correlation
    and lambda are linear in lambda, so "corr_j <= lambda at every knot" proves no outside concept should have
    entered. At the first knot where one should have, the path is rewound there and the violators join W.
    """
    k, d = C.shape
    corr0 = C @ z
    if excluded is not None:
        corr0 = np.where(excluded, -np.inf, corr0)
    allowed = np.isfinite(corr0)
    n_allowed = int(allowed.sum())
    lmax = max(0.0, _top_corr(C, z, corr0)[1]) if n_allowed else 0.0
    if path:
        lam_stop = lam_stop * lmax
    if lmax <= max(lam_stop, 0.0):
        return _HomotopyResult(np.empty(0, np.int64), np.empty(0), max(lam_stop, 0.0), lmax, "zero")
    m = min(n_allowed, max(int(m0), 1))
    W = np.argpartition(-corr0, m - 1)[:m] if m < k else np.flatnonzero(allowed)
    W = W[allowed[W]]
    eng = _Engine(C, z, W, gram)
    in_W = np.zeros(k, dtype=bool)
    in_W[W] = True
    skip = ~allowed | in_W  # concepts that need no check against the bound
    verified = 0
    # Knots are verified in chunks. One lambda that reaches its target only needs the KKT conditions there (one
    # matrix-vector product), whatever happened at the knots before; typical lambdas (l0 ~ 10) never fill a chunk.
    chunk = _CHUNK if path else _CHUNK_MAX
    while True:
        eng.run(lam_stop, chunk, cancel)
        new_segs = eng.segments[verified:]
        if new_segs and eng.W.size < n_allowed:
            if not path and eng.done:
                bad, _ = _outside_violators(C, eng.residuals[-1], new_segs[-1].lam_lo, skip, _NO_INDEX)
                if bad.size == 0:
                    break
            first, add = _first_violation(C, eng, verified, skip)
            if first < len(new_segs):
                eng.rewind(verified + first)
                eng.extend(add)
                skip[add] = True
                verified += first
                chunk = max(_CHUNK_MIN, chunk // 2)
                continue
            if add.size:
                eng.extend(add)
                skip[add] = True
            chunk = min(_CHUNK_MAX, chunk * 2)
        verified = len(eng.segments)
        if progress is not None and lmax > lam_stop:
            frac = (lmax - eng.lam) / (lmax - lam_stop)
            report(progress, int(1000 * min(max(frac, 0.0), 1.0)), 1000, f"lasso path: {verified} knots")
        if eng.done:
            break
    idx, w = eng.result()
    return _HomotopyResult(idx, w, eng.lam, eng.lam_start, eng.stop_reason, eng.segments)


# --------------------------------------------------------------------------------------------- single lambda


def _working_set_homotopy(
    rows: np.ndarray, z64: np.ndarray, lam_stop: float, cap: int
) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Exact homotopy on a small working set: (active positions, float64 weights at ``lam_stop``).

    ``rows`` (m, d) float64 are the working-set concepts. It runs in Gram space: a concept's Gram row against the
    working set is computed once, when it enters (m x d), and every other quantity per knot is m- or
    n-dimensional. The active set's algebra (bordered inverse, refinement, final answer) is ``_ActiveSet``'s, as
    in the row-space engine; rounding could at most reorder near-simultaneous events, which the caller's KKT check
    on every concept catches. None if more than ``cap`` concepts would be active at once or the path degenerates.
    """
    m, d = rows.shape
    b2 = 2.0 * (rows @ z64)
    j0 = int(np.argmax(b2))
    lam = float(b2[j0])
    if lam <= lam_stop:
        return np.empty(0, np.int64), np.empty(0)
    act = _ActiveSet(d, cap + 1)  # one spare slot: a concept that would make cap + 1 active ends this route
    if not act.reset([j0], rows[j0 : j0 + 1], z64, None):
        return None
    GA = np.empty((cap + 1, m))  # Gram rows of the active concepts against the working set, in act.pos order
    GA[0] = rows @ rows[j0]
    blocked = np.zeros(m, dtype=bool)  # active, dependent (in the span of the active rows) or just dropped
    blocked[j0] = True
    dependent: list[int] = []
    dropped = -1
    while True:
        n = act.n
        # On the active set w(lam) = P - lam Q / 2 with [P, Q] = G_AA^{-1} [b_A, 1].
        PQ = act.refine()
        # Entering: corr_j(lam') = b2_j - 2 G_jA P + lam' G_jA Q reaches lam' at lam' = (b2 - 2 G P) / (1 - G Q).
        GPQ = PQ.T @ GA[:n]  # (2, m)
        denom = 1.0 - GPQ[1]
        off = blocked | (denom <= 1e-12)
        denom[off] = 1.0
        lam_in = (b2 - 2.0 * GPQ[0]) / denom
        lam_in[off] = -np.inf
        j_in = int(np.argmax(lam_in))
        lam_enter = min(float(lam_in[j_in]), lam)
        # Leaving: w_i(lam') = 0 at lam' = 2 P_i / Q_i, for Q_i < 0 (weights that shrink as lambda falls).
        P, Q = PQ[:, 0], PQ[:, 1]
        i_out, lam_leave = -1, -np.inf
        if Q.min() < 0:
            lam_out = np.where(Q < 0, 2.0 * P / np.minimum(Q, -1e-300), -np.inf)
            i_out = int(np.argmax(lam_out))
            lam_leave = min(float(lam_out[i_out]), lam)
        if max(lam_enter, lam_leave) <= lam_stop:
            PQ = act.exact()
            return np.asarray(act.pos), np.maximum(PQ[:, 0] - lam_stop * 0.5 * PQ[:, 1], 0.0)
        t_enter, t_leave = lam - lam_enter, lam - lam_leave
        lam -= min(t_enter, t_leave)
        if dropped >= 0:
            blocked[dropped] = False
            dropped = -1
        if t_leave <= t_enter:
            dropped = act.pos[i_out]
            act.remove(i_out)
            GA[i_out : n - 1] = GA[i_out + 1 : n]
            for p in dependent:  # the span shrank: rows that depended on it may enter again
                blocked[p] = False
            dependent = []
            if act.n == 0:  # impossible on a valid path; guard against a degenerate dictionary
                return None
            continue
        g_row = rows @ rows[j_in]
        blocked[j_in] = True
        if not act.add(j_in, rows[j_in], g_row[act.pos], float(g_row[j_in]), z64):
            dependent.append(j_in)  # in the span of the active rows
            continue
        if act.n > cap:
            return None
        GA[n] = g_row


def _outside_violators(
    C: np.ndarray, r64: np.ndarray, lam: float, skip: Optional[np.ndarray], active: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concepts (not active, not in ``skip``) whose correlation ``2 <c_j, r>`` exceeds lam, decided exactly.

    One (k, d) product (float16 copy when prepared, else float32); the few within its error bound of lam are
    re-checked in float64. Returns (violators, approximate correlations with -inf on the skipped and active ones)
    so callers can pick likely entrants.
    """
    e, tol = half_products.products(C, 2.0 * r64, 0.5 * _AMBIG)
    e[active] = -np.inf
    if skip is not None:
        e[skip] = -np.inf
    near = np.flatnonzero(e > lam - 2.0 * tol)
    if near.size:
        c64 = 2.0 * (C[near].astype(_F64) @ r64)
        near = near[c64 > lam * (1 + 1e-9) + 1e-12]
    return near, e


def _top_candidates(corr: np.ndarray, m: int) -> np.ndarray:
    """About the ``m`` largest entries of ``corr`` (indices; finite ones only), without a full partition of k.

    The threshold is the matching order statistic of a strided 1-in-8 sample (np.argpartition of 10k values
    costs ~0.1 ms, as much as the rest of a cold solve's bookkeeping); the working set only has to be a good
    guess, because the KKT check on every concept decides.
    """
    k = corr.shape[0]
    if k <= 8 * m:
        idx = np.argpartition(corr, k - m)[k - m :] if m < k else np.arange(k)
    else:
        sample = corr[::8]
        q = max(1, m // 8)
        thr = np.partition(sample, sample.shape[0] - q)[sample.shape[0] - q]
        idx = np.flatnonzero(corr >= thr) if np.isfinite(thr) else np.argpartition(corr, k - m)[k - m :]
    return idx[np.isfinite(corr[idx])]


def _solve_small_working_set(
    C: np.ndarray, z: np.ndarray, lam: float, excluded: Optional[np.ndarray]
) -> Optional[tuple[np.ndarray, np.ndarray, float]]:
    """One lambda from cold in two passes over C: (global indices, float64 weights, lambda_max), or None.

    Pass one ranks all concepts by their correlation with z; the homotopy runs on about the top ``_M0_GRAM`` of
    them (Gram space, ~30 us a knot), and pass two checks the KKT conditions on every inactive concept at the
    final residual. Violators join the working set and the homotopy is rerun; an optimum is returned only when
    no concept anywhere violates them. None when the active set outgrows ``_GRAM_CAP`` (small lambdas: the
    row-space engine with bordered updates is cheaper there), the working set keeps growing, or rounding made
    the homotopy disagree with the check; the row-space engine then decides.
    """
    k, d = C.shape
    z64 = z.astype(_F64)
    corr0, tol0 = half_products.products(C, z64, 0.25 * _AMBIG)
    if excluded is not None:
        corr0[excluded] = -np.inf
    top = float(corr0.max())
    if not np.isfinite(top):
        return np.empty(0, np.int64), np.empty(0), 0.0
    j_top, lmax = _top_corr(C, z, corr0, tol0)
    lmax = max(0.0, lmax)
    if lmax <= lam:
        return np.empty(0, np.int64), np.empty(0), lmax
    W = _top_candidates(corr0, _M0_GRAM)
    if not (W == j_top).any():  # the exact argmax must start the path
        W = np.append(W, j_top)
    rows = C[W].astype(_F64)
    in_W = np.zeros(k, dtype=bool)
    in_W[W] = True
    for _ in range(_GRAM_ROUNDS):
        res = _working_set_homotopy(rows, z64, lam, min(_GRAM_CAP, d))
        if res is None:
            return None
        pos, w = res
        r64 = z64 - rows[pos].T @ w
        # Every inactive concept is checked, working set included: a violation inside W would mean rounding misled
        # the homotopy, and then the row-space engine decides.
        bad, e = _outside_violators(C, r64, lam, excluded, W[pos])
        if bad.size == 0:
            return W[pos], w, lmax
        if in_W[bad].any() or pos.size + bad.size > _GRAM_CAP:
            return None  # rounding misled the homotopy, or lambda is too small for a small working set
        # Add the violators and the concepts next closest to the bound (the likeliest next entrants).
        e[W] = -np.inf
        new = np.union1d(bad, _top_candidates(e, _LOOKAHEAD))
        new = new[~in_W[new]]
        rows = np.concatenate([rows, C[new].astype(_F64)])
        W = np.concatenate([W, new])
        in_W[new] = True
    return None


def prepare_dictionary(C: np.ndarray, force: Optional[str] = None) -> str:
    """Get C ready for fast cold solves (float16 copy if it wins here, see ``half_products``); returns the backend.

    Call once per concept matrix (the Decomposer does) and pass that same array to the solvers afterwards; not
    calling it only costs speed. ``force``: "float16" or "float32" instead of measuring (tests, benchmarks)."""
    return half_products.prepare(C, force)


def solve_positive_lasso(
    C: np.ndarray,
    z_tilde: np.ndarray,
    lam: float,
    exclude: Optional[Iterable[int]] = None,
    gram: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Exact minimiser at one lambda, (k,) float32. ``exclude``: concept indices forced to zero.

    Typical lambdas (up to ~``_GRAM_CAP`` active concepts) take two passes over C: rank the concepts by their
    correlation with z, run the homotopy on the best ~``_M0_GRAM`` of them, check the KKT conditions on all
    (adding violators and rerunning until none is left). Smaller lambdas use the row-space working-set homotopy
    of ``compute_path``. ``gram`` (optional (k, k) ``C C^T``) is only used by the latter. Raises ValueError if
    lambda is so small that the solution needs more than d concepts.
    """
    return solve_with_lambda_max(C, z_tilde, lam, exclude, gram)[0]


def solve_with_lambda_max(
    C: np.ndarray,
    z_tilde: np.ndarray,
    lam: float,
    exclude: Optional[Iterable[int]] = None,
    gram: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, float]:
    """``solve_positive_lasso`` and lambda_max of the (non-excluded) dictionary: a new image needs both (weights
    and the slider's top), and the solver's first pass over C computes lambda_max anyway."""
    C, z = _as_inputs(C, z_tilde)
    k, d = C.shape
    lam = float(lam)
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    out = np.zeros(k, dtype=_F32)
    excluded = _exclude_mask(k, exclude)
    small = _solve_small_working_set(C, z, lam, excluded) if gram is None else None
    if small is not None:
        out[small[0]] = small[1].astype(_F32)
        return out, small[2]
    res = _screened_homotopy(C, z, lam, excluded, None, gram, _M0_SOLVE, path=False)
    if res.stop_reason == "rank":
        raise ValueError(
            f"lambda={lam:.4g} is below the smallest lambda this dictionary supports exactly "
            f"(the active set would exceed d={d}); use a larger lambda"
        )
    out[res.active] = res.weights.astype(_F32)
    return out, res.lam_start


# --------------------------------------------------------------------------------------------- path


class LassoPath:
    """The exact solution path on [lam_min, lambda_max]; any lambda in between is an O(nnz) interpolation.

    Stored per linear piece: the active indices and their weights at both ends. Below ``lam_min`` (where the path
    stopped: ``lam_min_ratio``, the active set reaching d, or cancellation) ``weights_at`` raises ValueError,
    because extrapolating would be wrong and a silent re-solve would hide a stall on the GUI thread.
    """

    def __init__(self, k: int, lam_max: float, segments: list[_Segment], lam_min: float, stop_reason: str) -> None:
        self.k = int(k)
        self.lambda_max = float(lam_max)
        self._segments = segments
        self.lam_min = float(lam_min)
        self.stop_reason = stop_reason
        knots = [lam_max] + [s.lam_lo for s in segments]
        self.knots = np.asarray(knots, dtype=_F64)  # descending
        self._neg_knots = [-x for x in knots]  # ascending, for bisect

    def __len__(self) -> int:
        return len(self._segments)

    def sparse_at(self, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """(int32 indices, float32 weights) of the nonzero weights at ``lam``."""
        lam = float(lam)
        if lam >= self.lambda_max or (not self._segments and lam >= self.lam_min):
            return np.empty(0, np.int32), np.empty(0, _F32)
        if lam < self.lam_min * (1 - 1e-12) - 1e-15:
            raise ValueError(
                f"lambda={lam:.6g} is below the lowest lambda of this path ({self.lam_min:.6g}, stopped by "
                f"{self.stop_reason}); compute the path with a smaller lam_min_ratio or pick a larger lambda"
            )
        i = bisect.bisect_left(self._neg_knots, -lam) - 1  # knots[i] >= lam > knots[i+1] (roughly)
        i = min(max(i, 0), len(self._segments) - 1)
        seg = self._segments[i]
        span = seg.lam_hi - seg.lam_lo
        f = 0.0 if span <= 0 else min(max((seg.lam_hi - lam) / span, 0.0), 1.0)
        vals = seg.w_hi + f * (seg.w_lo - seg.w_hi)
        keep = vals > 0
        return seg.idx[keep], vals[keep]

    def weights_at(self, lam: float) -> np.ndarray:
        """Dense (k,) float32 weights at ``lam`` (exact linear interpolation between knots)."""
        out = np.zeros(self.k, dtype=_F32)
        idx, vals = self.sparse_at(lam)
        out[idx] = vals
        return out

    def l0_at(self, lam: float) -> int:
        """Number of nonzero weights at ``lam``."""
        return int(self.sparse_at(lam)[0].size)

    def lambda_for_l0(self, n: int) -> float:
        """A lambda whose solution has about ``n`` concepts: the midpoint of the first (largest-lambda) piece whose
        active set has at least ``n`` members. l0 is not monotone in lambda (concepts can leave), so this is the
        sparsest solution with l0 >= n. ``n <= 0`` gives lambda_max; an unreachable ``n`` gives ``lam_min``."""
        if n <= 0 or not self._segments:
            return self.lambda_max
        for seg in self._segments:
            if seg.idx.size >= n:
                return 0.5 * (seg.lam_hi + seg.lam_lo)
        return self.lam_min

    @property
    def l0_range(self) -> tuple[int, int]:
        sizes = [s.idx.size for s in self._segments]
        return (0, max(sizes) if sizes else 0)


def compute_path(
    C: np.ndarray,
    z_tilde: np.ndarray,
    lam_min_ratio: float = 0.0,
    exclude: Optional[Iterable[int]] = None,
    cancel: Optional[CancelToken] = None,
    progress: Optional[ProgressFn] = None,
) -> LassoPath:
    """Exact positive-lasso homotopy from lambda_max down to ``lam_min_ratio * lambda_max``.

    Stops earlier only if the active set would exceed d (``path.lam_min`` and ``path.stop_reason`` say where).
    Raises CancelledError when ``cancel`` is set. ``progress(done, 1000, msg)``: share of the lambda range covered.
    Cost grows with the number of knots (about the final l0 plus drops): stop at a ratio the UI needs (0.02 covers
    l0 of several hundred) rather than 0.
    """
    C, z = _as_inputs(C, z_tilde)
    k = C.shape[0]
    excluded = _exclude_mask(k, exclude)
    if not 0.0 <= lam_min_ratio <= 1.0:
        raise ValueError(f"lam_min_ratio must be in [0, 1], got {lam_min_ratio}")
    check(cancel)
    res = _screened_homotopy(C, z, lam_min_ratio, excluded, cancel, None, _M0_PATH, path=True, progress=progress)
    return LassoPath(k, res.lam_start, res.segments, res.lam_end, res.stop_reason)


# --------------------------------------------------------------------------------------------- authors' ADMM


def admm_reference(
    C: np.ndarray,
    z_tilde: np.ndarray,
    lam: float,
    rho: float = 5.0,
    tol: float = 1e-6,
    max_iter: int = 2000,
    seed: Optional[int] = None,
    woodbury: bool = False,
    timings: Optional[dict] = None,
) -> tuple[np.ndarray, int]:
    """The SpLiCE reference ADMM (``splice/admm.py`` with SPLICE's defaults rho=5, tol=1e-6, max_iter=2000).

    x = Q^{-1}(2 C z + rho (z_k - u)), Q = 2 C C^T + rho I factored on every call (k x k!); z = max(x + u - lam/rho, 0);
    u += x - z; stop when ||x - z|| < tol and rho ||z - z_old|| < tol (absolute); init x, z, u ~ N(0, 1).
    ``woodbury=True`` applies Q^{-1} through a d x d factor instead (same iterates up to rounding) so the benchmark can
    run it at full size. Returns (weights (k,) float32, iterations). Float32 throughout, as the reference (torch fp32).
    ``timings`` (a dict, optional) receives ``setup_s`` (forming and factoring Q) and ``iterations_s``.
    """
    import time

    from scipy.linalg import cho_factor, cho_solve

    t_start = time.perf_counter()

    C, z = _as_inputs(C, z_tilde)
    k, d = C.shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(k).astype(_F32)
    zz = rng.standard_normal(k).astype(_F32)
    u = rng.standard_normal(k).astype(_F32)
    if woodbury:
        # (rho I + 2 C C^T)^{-1} b = (1/rho) [b - C (rho/2 I + C^T C)^{-1} C^T b]
        small = cho_factor((0.5 * rho) * np.eye(d, dtype=_F32) + C.T @ C)

        def q_solve(b: np.ndarray) -> np.ndarray:
            return ((b - C @ cho_solve(small, C.T @ b).astype(_F32)) / rho).astype(_F32)

    else:
        Q = 2.0 * (C @ C.T)
        Q[np.diag_indices(k)] += rho
        fac = cho_factor(Q, lower=True, overwrite_a=True)

        def q_solve(b: np.ndarray) -> np.ndarray:
            return cho_solve(fac, b).astype(_F32)

    thr = _F32(lam / rho)
    t_setup = time.perf_counter()
    it = 0
    for it in range(1, max_iter + 1):
        x = q_solve(2.0 * (C @ z) + rho * (zz - u))
        z_old = zz
        zz = np.maximum(x + u - thr, 0.0).astype(_F32)
        u = (u + x - zz).astype(_F32)
        if np.linalg.norm(x - zz) < tol and rho * np.linalg.norm(zz - z_old) < tol:
            break
    if timings is not None:
        timings["setup_s"] = t_setup - t_start
        timings["iterations_s"] = time.perf_counter() - t_setup
    return zz, it
