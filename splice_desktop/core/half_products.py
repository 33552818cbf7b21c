"""``C @ v`` for a fixed concept matrix, from a float16 copy when that is faster here, with a proven error bound.

Why: a cold solve reads the whole (k, d) matrix twice (rank the concepts; check the optimality conditions on all
of them). Both products are memory-bound: 20-46 MB of float32 for 10k x 512 to 15k x 768. torch's CPU float16
matrix-vector kernel reads half the bytes and accumulates in float32; measured here (AMD EPYC, 2 cores, torch
2.14) it takes 0.36-0.56 ms against numpy float32's 0.9-1.6 ms. Its results are only used to *rank* concepts and
to find the few near a threshold; every decision within the error bound is re-made in float64 by the caller.

Error bound, per concept j (v scaled to unit norm, rounding unit u = 2^-11 of float16, fp32 accumulation):
``|fp16(C) @ fp16(v) - C @ v|_j <= ||c_j|| ||v|| (2u [inputs] + u [float16 output] + d 2^-23 [sums])`` plus
``2^-25 sqrt(d) (1 + ||c_j||) ||v||`` for entries in float16's subnormal range; ``HALF_REL`` is the first term
with a 2x margin for d <= 2048, and the second is added as it stands. ``prepare`` checks that the kernel really
accumulates in float32 (an adversarial all-equal product whose float16 accumulation would be off by ~d u) and
times both backends side by side; the float16 copy is used only when it passes and wins.

The copy is keyed to the array object (weak reference): callers must not modify C in place after ``prepare``.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from typing import Any, Optional

import numpy as np

__all__ = ["HALF_REL", "prepare", "backend", "products"]

HALF_REL = 4e-3
_MIN_ENTRIES = 1 << 21  # below ~2M entries (e.g. 4k x 512) the float32 product sits in cache and wins anyway
_MAX_D = 2048  # HALF_REL's accumulation term holds up to here
_MAX_ROW_NORM = 1e3  # products stay far inside float16's range (65504); concept rows are unit vectors
_TIMING_REPS = 5
_FLUSH_BYTES = 96 << 20  # larger than any desktop CPU's last-level cache we target (2026: up to 96 MB)

_lock = threading.Lock()
_prepared: dict[int, tuple[weakref.ref, Optional["_Half"]]] = {}


class _Half:
    """A float16 torch copy of C and its largest row norm (for the bound)."""

    def __init__(self, C: np.ndarray, torch: Any) -> None:
        self._torch = torch
        with warnings.catch_warnings():
            # A concept bank loaded from the cache is a read-only memory map; torch warns about sharing it, but it
            # is only read here, into a new float16 tensor.
            warnings.simplefilter("ignore", UserWarning)
            self.t = torch.from_numpy(C).to(torch.float16)
        self.max_norm = _max_row_norm(C)
        self._slop = 2.0**-24 * float(np.sqrt(C.shape[1])) * (1.0 + self.max_norm)

    def matvec(self, v: np.ndarray) -> tuple[np.ndarray, float]:
        s = float(np.linalg.norm(v))
        if not s > 0.0:
            return np.zeros(self.t.shape[0], dtype=np.float32), 0.0
        torch = self._torch
        vh = torch.from_numpy(v * (1.0 / s)).to(torch.float16)
        out = torch.mv(self.t, vh).float().numpy()  # float16 -> float32 in torch: numpy's conversion is scalar
        out *= np.float32(s)
        return out, (HALF_REL * self.max_norm + self._slop) * s


def _max_row_norm(C: np.ndarray) -> float:
    return float(np.sqrt(np.max(np.einsum("ij,ij->i", C, C, dtype=np.float64), initial=0.0)))


def _accumulates_in_float32(torch: Any, d: int) -> bool:
    """All-equal rows and vector: the exact product is 1. Float16 accumulation of d terms of 1/d drifts by ~d u."""
    x = torch.full((8, d), float(d) ** -0.5, dtype=torch.float16)
    out = torch.mv(x, x[0]).double()
    exact = float((x[0].double() * x[0].double()).sum())
    return bool((out - exact).abs().max() <= 2.0 ** -10)


def _cold_times(fns: list[Any]) -> list[float]:
    """Best-of-N time of each fn, each call after the CPU caches were flushed, interleaved so load hits all alike.

    Cold because that is when a cold solve happens: a new image's C @ z follows its encoding, and the model's
    forward pass has evicted C from the last-level cache. (In a hot loop a 20 MB float32 C can sit in a 32 MB L3
    and the float32 product wins; that is not the case that needs speed.)"""
    flush = np.ones(_FLUSH_BYTES // 4, dtype=np.float32)
    best = [float("inf")] * len(fns)
    for _ in range(_TIMING_REPS):
        for i, fn in enumerate(fns):
            flush += 1.0
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def prepare(C: np.ndarray, force: Optional[str] = None) -> str:
    """Build (once per array) the fastest exact-enough way to form ``C @ v``; returns the backend's name.

    C: (k, d) float32 C-contiguous, the matrix later passed to the solver (same object). Costs one float16 copy
    (half of C's memory) and ~10 timed products on flushed caches (~0.1 s). Small matrices, rows too long for
    float16's range and setups without a fast float16 kernel keep numpy float32 and cost nothing. ``force``
    ("float16" or "float32") skips the size rule and the timing (tests, benchmarks); float16 still requires
    torch and its float32 accumulation.
    """
    if force not in (None, "float16", "float32"):
        raise ValueError(f"force must be None, 'float16' or 'float32', not {force!r}")
    key = id(C)
    with _lock:
        hit = _prepared.get(key)
        known = hit is not None and hit[0]() is C
        if known and force is None:
            return _name(hit[1])
    half: Optional[_Half] = None
    eligible = (
        force != "float32" and C.ndim == 2 and C.dtype == np.float32 and C.flags.c_contiguous
        and 0 < C.shape[1] <= _MAX_D and (force == "float16" or C.size >= _MIN_ENTRIES)
        and _max_row_norm(C) <= _MAX_ROW_NORM
    )
    torch = _torch_or_none() if eligible else None
    if torch is not None and _accumulates_in_float32(torch, C.shape[1]):
        cand = _Half(C, torch)
        if force == "float16":
            half = cand
        else:
            v = np.random.default_rng(0).standard_normal(C.shape[1])
            v32 = v.astype(np.float32)
            cand.matvec(v)
            C @ v32
            t_half, t_f32 = _cold_times([lambda: cand.matvec(v), lambda: C @ v32])
            if t_half < 0.9 * t_f32:  # clearly faster, or not worth the extra memory
                half = cand
    with _lock:
        _prepared[key] = (weakref.ref(C), half)
    if not known:
        weakref.finalize(C, _forget, key)
    return _name(half)


def _torch_or_none() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; this keeps the solver usable without it
        return None
    return torch


def _name(half: Optional[_Half]) -> str:
    return "float16 (torch)" if half is not None else "float32 (numpy)"


def _forget(key: int) -> None:
    with _lock:
        entry = _prepared.get(key)
        if entry is not None and entry[0]() is None:
            del _prepared[key]


def backend(C: np.ndarray) -> Optional[_Half]:
    """The float16 copy prepared for this very array, or None (not prepared, or float32 was faster)."""
    hit = _prepared.get(id(C))
    if hit is None or hit[0]() is not C:
        return None
    return hit[1]


def products(C: np.ndarray, v: np.ndarray, f32_tol: float) -> tuple[np.ndarray, float]:
    """(``C @ v`` as float32, a bound on each entry's absolute error). ``v`` float64; ``f32_tol`` is the caller's
    bound for the plain float32 product (used when no float16 copy was prepared for C)."""
    half = backend(C)
    if half is not None:
        return half.matvec(v)
    return C @ v.astype(np.float32), f32_tol
