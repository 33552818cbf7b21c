"""The float16 products behind the cold solve: their error bound holds, they are keyed to one array, and cold
solves that use them give the sklearn minimiser and the exact lambda_max, near-ties included."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from splice_desktop.core import half_products
from splice_desktop.core.solvers import (
    lambda_max,
    prepare_dictionary,
    solve_positive_lasso,
    solve_with_lambda_max,
)
from tests.core.test_solvers import (
    _centre,
    _unit_rows,
    assert_same_solution,
    planted_problem,
    random_problem,
    sklearn_chain,
)

pytest.importorskip("torch")


class _MatvecSpy:
    """Counts float16 products, so a test cannot pass on the float32 route by accident."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        real = half_products._Half.matvec

        def spy(obj, v):
            self.calls += 1
            return real(obj, v)

        monkeypatch.setattr(half_products._Half, "matvec", spy)


def test_error_bound_holds_for_every_entry():
    rng = np.random.default_rng(3)
    C = _centre(rng.standard_normal((4000, 384)))
    C[:500] *= rng.uniform(0.2, 3.0, (500, 1)).astype(np.float32)  # the bound scales with the largest row norm
    C = np.ascontiguousarray(C)
    assert prepare_dictionary(C, force="float16") == "float16 (torch)"
    spike = np.zeros(384)
    spike[7] = 1.0
    spike[8:] = 1e-4
    for v in (rng.standard_normal(384), spike, 1e-6 * rng.standard_normal(384), 1e3 * rng.standard_normal(384),
              np.abs(rng.standard_normal(384))):
        approx, tol = half_products.products(C, v, f32_tol=0.0)
        exact = C.astype(np.float64) @ v
        assert approx.dtype == np.float32 and approx.shape == (4000,)
        err = np.abs(approx - exact)
        assert err.max() <= tol, f"error {err.max():.3g} above the bound {tol:.3g}"
        assert err.max() > 0.0  # really the float16 route (float32 + f32_tol=0 would fail the bound instead)
    zero, tol0 = half_products.products(C, np.zeros(384), 0.0)
    assert not zero.any() and tol0 == 0.0


def test_copy_belongs_to_one_array_and_dies_with_it():
    C, _ = random_problem(3000, 128, seed=4)
    prepare_dictionary(C, force="float16")
    assert half_products.backend(C) is not None
    assert half_products.backend(C.copy()) is None  # a different array never sees a stale copy
    key = id(C)
    del C
    gc.collect()
    assert key not in half_products._prepared


def test_read_only_memory_mapped_matrix_is_accepted_quietly(tmp_path, recwarn):
    """Concept banks come from the cache as read-only memory maps."""
    C, z = random_problem(3000, 128, seed=9)
    np.save(tmp_path / "c.npy", C)
    mapped = np.ascontiguousarray(np.load(tmp_path / "c.npy", mmap_mode="r"), dtype=np.float32)
    assert not mapped.flags.writeable
    assert prepare_dictionary(mapped, force="float16") == "float16 (torch)"
    np.testing.assert_allclose(solve_positive_lasso(mapped, z, 0.3), solve_positive_lasso(C, z, 0.3), atol=1e-6)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_small_matrices_keep_float32_without_timing():
    C, z = random_problem(500, 64, seed=5)
    assert prepare_dictionary(C) == "float32 (numpy)"
    assert half_products.backend(C) is None
    assert prepare_dictionary(C, force="float32") == "float32 (numpy)"
    with pytest.raises(ValueError, match="force"):
        prepare_dictionary(C, force="half")
    # Rows so long that products could overflow float16 stay on float32 even when float16 is asked for.
    assert prepare_dictionary(np.ascontiguousarray(C * 5000.0), force="float16") == "float32 (numpy)"


@pytest.mark.parametrize("kind", ["planted", "random"])
def test_cold_solves_on_float16_passes_match_sklearn(monkeypatch, kind):
    if kind == "planted":
        C, z, _ = planted_problem(6000, 256, seed=6, n_atoms=8, noise=0.3)
    else:
        C, z = random_problem(6000, 256, seed=7)
    ref_lmax = lambda_max(C, z)
    lams = ref_lmax * np.array([0.8, 0.5, 0.3, 0.15])
    refs = sklearn_chain(C, z, lams)
    f32 = [solve_positive_lasso(C, z, lam) for lam in lams]  # before prepare: the float32 route
    prepare_dictionary(C, force="float16")
    spy = _MatvecSpy(monkeypatch)
    for lam, ref, w32 in zip(lams, refs, f32):
        w, top = solve_with_lambda_max(C, z, lam)
        assert top == pytest.approx(ref_lmax, rel=1e-12)  # float64 dots of a different candidate set: ~1 ulp
        assert_same_solution(C, z, w, ref, lam, "float16 passes")
        np.testing.assert_allclose(w, w32, rtol=0, atol=1e-6)
    assert spy.calls >= 2 * len(lams)


def _tie_problem(seed: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Concept 10 and six near-copies of it (``eps`` apart), and z near them."""
    rng = np.random.default_rng(seed)
    C = _centre(rng.standard_normal((5000, 256)))
    base = C[10].astype(np.float64)
    for j in range(11, 17):
        C[j] = _unit_rows(base + eps * rng.standard_normal(256))
    return np.ascontiguousarray(C), _unit_rows(base + 0.05 * rng.standard_normal(256))


def test_near_ties_are_decided_exactly():
    """Where float16 ranks the wrong concept first, lambda_max and the first active concept still match float64."""
    for seed, eps in ((s, e) for e in (3e-5, 1e-5) for s in range(60)):  # found at (3e-5, 30) here
        C, z = _tie_problem(seed, eps)
        exact = 2.0 * (C.astype(np.float64) @ z.astype(np.float64))
        prepare_dictionary(C, force="float16")
        approx, _ = half_products.products(C, 2.0 * z.astype(np.float64), 0.0)
        if approx[int(np.argmax(exact))] < approx.max():  # float16 ranks another concept strictly higher
            break
    else:
        pytest.fail("no seed gave a near-tie that float16 orders wrongly")
    best = int(np.argmax(exact))
    w, top = solve_with_lambda_max(C, z, 0.99999 * exact[best])
    assert top == pytest.approx(exact[best], rel=1e-12)
    assert np.flatnonzero(w).tolist() == [best]
