"""Exactness of the positive-lasso solvers against scikit-learn, the KKT conditions and planted supports.

sklearn (a test dependency) is the independent reference: ``Lasso(positive=True, alpha=lam/(2d))`` on X = C.T.
It is run along descending lambdas with its own warm start (as ``lasso_path`` does) and a tight duality-gap
tolerance, in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from splice_desktop.core.errors import CancelledError
from splice_desktop.core.progress import CancelToken
from splice_desktop.core.solvers import (
    LassoPath,
    admm_reference,
    compute_path,
    kkt_violation,
    lambda_max,
    objective,
    prepare_dictionary,
    solve_positive_lasso,
    solve_with_lambda_max,
)

SUPPORT_EPS = 1e-7  # weights below this are ignored when comparing supports
OBJ_RTOL = 1e-6
N_LAMBDAS = 20


# ------------------------------------------------------------------------------------------------ data


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def _centre(raw: np.ndarray) -> np.ndarray:
    """Normalise, subtract the mean, normalise: the SpLiCE concept-bank recipe."""
    unit = _unit_rows(raw)
    return _unit_rows(unit - unit.mean(axis=0))


def random_problem(k: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    C = _centre(rng.standard_normal((k, d)))
    z = _unit_rows(rng.standard_normal(d))
    return C, z


def planted_problem(
    k: int, d: int, seed: int = 0, n_atoms: int = 5, noise: float = 0.02
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z = normalised positive combination of a few atoms plus small noise; returns (C, z, planted indices)."""
    rng = np.random.default_rng(seed)
    C = _centre(rng.standard_normal((k, d)))
    support = np.sort(rng.choice(k, size=n_atoms, replace=False))
    coef = rng.uniform(0.5, 1.5, size=n_atoms)
    z = coef @ C[support].astype(np.float64) + noise * rng.standard_normal(d) / np.sqrt(d) * np.sqrt(n_atoms)
    return C, _unit_rows(z), support


_CACHE: dict = {}


def problem(kind: str, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    key = (kind, k, d)
    if key not in _CACHE:
        _CACHE[key] = random_problem(k, d, seed=k + d) if kind == "random" else planted_problem(k, d, seed=k + d)[:2]
    return _CACHE[key]


def sklearn_chain(C: np.ndarray, z: np.ndarray, lams: np.ndarray, tol: float = 1e-8) -> list[np.ndarray]:
    """sklearn solutions at descending lambdas, each warm-started from the previous one (its own solutions)."""
    from sklearn.linear_model import Lasso

    d = C.shape[1]
    X = np.asfortranarray(C.T.astype(np.float64))
    y = z.astype(np.float64)
    model = Lasso(alpha=1.0, positive=True, fit_intercept=False, tol=tol, max_iter=500_000, warm_start=True)
    out = []
    for lam in lams:
        model.set_params(alpha=float(lam) / (2 * d))
        model.fit(X, y)
        out.append(model.coef_.copy())
    return out


def assert_same_solution(C, z, w, ref, lam, what=""):
    o, o_ref = objective(C, z, w, lam), objective(C, z, ref, lam)
    assert abs(o - o_ref) <= OBJ_RTOL * abs(o_ref), f"{what} objective {o} vs sklearn {o_ref} at lam={lam}"
    s, s_ref = set(np.flatnonzero(w > SUPPORT_EPS)), set(np.flatnonzero(ref > SUPPORT_EPS))
    assert s == s_ref, f"{what} support differs at lam={lam}: only ours {sorted(s - s_ref)}, only sklearn {sorted(s_ref - s)}"


def check_grid_against_sklearn(C: np.ndarray, z: np.ndarray, n_solve: int = 5) -> None:
    """Path lookups at 20 lambdas in [0.02, 1] x lambda_max, plus fresh solves at some of them, vs sklearn."""
    lmax = lambda_max(C, z)
    lams = lmax * np.linspace(1.0, 0.02, N_LAMBDAS)
    path = compute_path(C, z, lam_min_ratio=0.02)
    assert path.lambda_max == pytest.approx(lmax, rel=1e-6)
    refs = sklearn_chain(C, z, lams)
    solve_at = set(np.linspace(0, N_LAMBDAS - 1, n_solve).round().astype(int).tolist())
    # The app's route: a Decomposer prepares its matrix, so cold solves there read a float16 copy (forced here,
    # whatever this machine's timing would choose); C itself stays unprepared (float32 passes).
    C_half = C.copy()
    prepare_dictionary(C_half, force="float16")
    for i, (lam, ref) in enumerate(zip(lams, refs)):
        w_path = path.weights_at(lam)
        assert w_path.dtype == np.float32 and w_path.shape == (C.shape[0],)
        assert_same_solution(C, z, w_path, ref, lam, "path")
        if i in solve_at:
            assert_same_solution(C, z, solve_positive_lasso(C, z, lam), ref, lam, "solve")
            assert_same_solution(C, z, solve_positive_lasso(C_half, z, lam), ref, lam, "solve, float16 passes")


# ------------------------------------------------------------------------------------------------ sklearn grids


@pytest.mark.parametrize("kind", [pytest.param("random", marks=pytest.mark.slow), "planted"])
def test_matches_sklearn_10k_512(kind):
    C, z = problem(kind, 10_000, 512)
    check_grid_against_sklearn(C, z)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["random", "planted"])
def test_matches_sklearn_15k_768(kind):
    C, z = problem(kind, 15_000, 768)
    check_grid_against_sklearn(C, z)


@pytest.mark.slow
@pytest.mark.parametrize("k,d", [(10_000, 768), (15_000, 512)])
def test_matches_sklearn_other_sizes_planted(k, d):
    C, z = problem("planted", k, d)
    check_grid_against_sklearn(C, z, n_solve=3)


def _tiny_bank(tiny_model, n_words: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """A concept bank from the tiny model: random short words, encoded, normalised, centred, normalised."""
    import torch

    rng = np.random.default_rng(7)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = sorted({"".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(n_words + 200)})[:n_words]
    model = tiny_model.model
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(words), 500):
            tokens = tiny_model.tokenizer(words[start : start + 500]).to(tiny_model.device)
            chunks.append(model.encode_text(tokens).float().cpu().numpy())
        images = torch.from_numpy(rng.standard_normal((8, 3, tiny_model.image_size, tiny_model.image_size)).astype(np.float32))
        img = _unit_rows(tiny_model.encode_image_tensor(images))
    C = _centre(np.concatenate(chunks))
    z = _unit_rows(img[0] - img.mean(axis=0))
    return np.ascontiguousarray(C), z


def test_matches_sklearn_tiny_model_bank(tiny_model):
    C, z = _tiny_bank(tiny_model)
    assert C.shape == (2000, tiny_model.embed_dim)
    check_grid_against_sklearn(C, z)


# ------------------------------------------------------------------------------------------------ properties


def test_lambda_max_definition_and_zero_solution():
    C, z = random_problem(500, 64, seed=1)
    lmax = lambda_max(C, z)
    assert lmax == pytest.approx(2.0 * float(np.max(C.astype(np.float64) @ z)), rel=1e-6)
    # The same float64 value everywhere, so a slider top taken from either gives l0 = 0 exactly.
    assert compute_path(C, z, lam_min_ratio=0.5).lambda_max == lmax
    for lam in (lmax, 1.5 * lmax):
        assert not solve_positive_lasso(C, z, lam).any()
        assert not compute_path(C, z).weights_at(lam).any()
    assert solve_positive_lasso(C, z, 0.999 * lmax).any()
    # All correlations negative: lambda_max clips at 0 and the solution is zero for every lambda.
    assert lambda_max(C, -C[0]) >= 0.0
    neg = -np.abs(C)
    neg = _unit_rows(neg)
    zpos = _unit_rows(np.abs(z))
    assert lambda_max(neg, zpos) == 0.0
    assert not solve_positive_lasso(neg, zpos, 0.1).any()


def test_kkt_conditions_hold():
    C, z, _ = planted_problem(10_000, 512, seed=3)
    lmax = lambda_max(C, z)
    path = compute_path(C, z, lam_min_ratio=0.05)
    for frac in (0.9, 0.5, 0.25, 0.1, 0.05):
        lam = frac * lmax
        for w in (solve_positive_lasso(C, z, lam), path.weights_at(lam)):
            assert (w >= 0).all()
            # Direct check, float64: active 2<c_j,r> = lam, inactive <= lam.
            w64 = w.astype(np.float64)
            r = z.astype(np.float64) - C.astype(np.float64).T @ w64
            corr = 2 * C.astype(np.float64) @ r
            act = w64 > 0
            assert np.abs(corr[act] - lam).max() < 1e-5 * lam + 1e-6
            assert corr[~act].max() <= lam * (1 + 1e-5) + 1e-6
            assert kkt_violation(C, z, w, lam) < 1e-5 * lam + 1e-6


@pytest.mark.parametrize("k,d", [(10_000, 512), (15_000, 768)])
def test_planted_support_recovered(k, d):
    C, z, support = planted_problem(k, d, seed=11)
    path = compute_path(C, z, lam_min_ratio=0.3)
    lam = path.lambda_for_l0(len(support))
    w = path.weights_at(lam)
    assert set(np.flatnonzero(w)) == set(support.tolist())
    w_solve = solve_positive_lasso(C, z, lam)
    assert set(np.flatnonzero(w_solve > SUPPORT_EPS)) == set(support.tolist())
    # The planted atoms are the first to enter: every lambda above that point is a subset of the support.
    for lam_hi in np.linspace(lam, path.lambda_max, 7):
        assert set(np.flatnonzero(path.weights_at(lam_hi))) <= set(support.tolist())


class _RouteSpy:
    """Counts which single-lambda route ran: working-set homotopy rounds, and fallbacks to the row-space engine."""

    def __init__(self, monkeypatch) -> None:
        import splice_desktop.core.solvers as solvers

        self.rounds = 0
        self.fallbacks = 0
        ws, rs = solvers._working_set_homotopy, solvers._screened_homotopy

        def ws_spy(*a, **kw):
            self.rounds += 1
            return ws(*a, **kw)

        def rs_spy(*a, **kw):
            self.fallbacks += 1
            return rs(*a, **kw)

        monkeypatch.setattr(solvers, "_working_set_homotopy", ws_spy)
        monkeypatch.setattr(solvers, "_screened_homotopy", rs_spy)


def test_single_lambda_routes_all_match_sklearn(monkeypatch):
    """One round, several rounds (a working set that misses entering concepts) and the fallback all give the
    sklearn minimiser; the spy proves each route really ran."""
    import splice_desktop.core.solvers as solvers

    C, z = random_problem(3000, 128, seed=21)
    lmax = lambda_max(C, z)
    lams = lmax * np.array([0.7, 0.45, 0.3])
    refs = sklearn_chain(C, z, lams)
    spy = _RouteSpy(monkeypatch)

    def run(expect_rounds_at_least: int, expect_fallback: bool) -> None:
        spy.rounds = spy.fallbacks = 0
        for lam, ref in zip(lams, refs):
            assert_same_solution(C, z, solve_positive_lasso(C, z, lam), ref, lam, "solve")
        assert spy.rounds >= expect_rounds_at_least
        assert (spy.fallbacks > 0) == expect_fallback

    run(expect_rounds_at_least=3, expect_fallback=False)
    # A working set of ~8 cannot hold the answer: violators must be found on the full check and added, so at
    # least one lambda needs more than one round.
    monkeypatch.setattr(solvers, "_M0_GRAM", 2)
    monkeypatch.setattr(solvers, "_LOOKAHEAD", 1)
    monkeypatch.setattr(solvers, "_GRAM_ROUNDS", 50)
    monkeypatch.setattr(solvers, "_GRAM_CAP", 10**6)  # no early hand-over: the rounds must converge
    run(expect_rounds_at_least=len(lams) + 1, expect_fallback=False)
    # Too many active concepts for the small route: the row-space engine answers.
    monkeypatch.setattr(solvers, "_GRAM_CAP", 3)
    run(expect_rounds_at_least=1, expect_fallback=True)


def test_solve_with_lambda_max_returns_the_slider_top():
    C, z, support = planted_problem(2000, 64, seed=22)
    lmax = lambda_max(C, z)
    w, top = solve_with_lambda_max(C, z, 0.4 * lmax)
    assert top == lmax and w.any()
    w0, top0 = solve_with_lambda_max(C, z, 2.0 * lmax)
    assert top0 == lmax and not w0.any()
    # With concepts excluded it is lambda_max of the remaining dictionary.
    first = int(np.argmax(C.astype(np.float64) @ z))
    keep = np.setdiff1d(np.arange(C.shape[0]), [first])
    _, top_ex = solve_with_lambda_max(C, z, 0.4 * lmax, exclude=[first])
    assert top_ex == pytest.approx(lambda_max(C[keep], z), rel=1e-12) and top_ex < lmax


def test_path_lookup_equals_fresh_solve_at_and_between_knots():
    C, z, _ = planted_problem(3000, 128, seed=5, noise=0.3)
    path = compute_path(C, z, lam_min_ratio=0.05)
    knots = path.knots
    assert np.all(np.diff(knots) <= 0), "knots must be descending"
    assert knots[0] == pytest.approx(path.lambda_max)
    assert len(knots) > 20
    picks = np.linspace(1, len(knots) - 2, 8).round().astype(int)
    lams = [knots[i] for i in picks] + [0.5 * (knots[i] + knots[i + 1]) for i in picks]
    lams += [0.3 * knots[i] + 0.7 * knots[i + 1] for i in picks]
    for lam in lams:
        w_path = path.weights_at(lam)
        w_solve = solve_positive_lasso(C, z, lam)
        np.testing.assert_allclose(w_path, w_solve, rtol=1e-5, atol=1e-6)
        assert path.l0_at(lam) == int(np.count_nonzero(w_path))


def test_exclude_forces_zero_and_matches_reduced_sklearn():
    C, z, support = planted_problem(4000, 256, seed=9)
    lmax = lambda_max(C, z)
    excl = [int(support[0]), int(support[2]), 17]
    keep = np.setdiff1d(np.arange(C.shape[0]), excl)
    lams = lmax * np.array([0.8, 0.4, 0.15, 0.05])
    refs = sklearn_chain(C[keep], z, lams)
    path = compute_path(C, z, lam_min_ratio=0.05, exclude=excl)
    full = compute_path(C, z, lam_min_ratio=0.05)
    for lam, ref_reduced in zip(lams, refs):
        ref = np.zeros(C.shape[0])
        ref[keep] = ref_reduced
        for w in (solve_positive_lasso(C, z, lam, exclude=excl), path.weights_at(lam)):
            assert not w[excl].any()
            assert_same_solution(C, z, w, ref, lam, "exclude")
    # Excluding planted atoms really changes the answer (others absorb their mass).
    assert full.weights_at(lams[1])[excl[:2]].min() > 0


def test_gram_argument_gives_the_same_solution():
    C, z = random_problem(1500, 64, seed=4)
    G = C.astype(np.float64) @ C.astype(np.float64).T
    lam = 0.3 * lambda_max(C, z)
    np.testing.assert_allclose(solve_positive_lasso(C, z, lam, gram=G), solve_positive_lasso(C, z, lam), atol=1e-6)


class _CancelAfter(CancelToken):
    """Cancels itself after ``n`` polls, to prove cancellation is checked during the work, not only up front."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def raise_if_cancelled(self) -> None:
        self.n -= 1
        if self.n < 0:
            self.cancel()
        super().raise_if_cancelled()


def test_cancel_raises():
    C, z = random_problem(3000, 128, seed=2)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        compute_path(C, z, cancel=token)
    with pytest.raises(CancelledError):
        compute_path(C, z, cancel=_CancelAfter(5))
    assert len(compute_path(C, z, lam_min_ratio=0.1, cancel=CancelToken())) > 5


def test_l0_queries():
    C, z = random_problem(5000, 128, seed=6)
    path = compute_path(C, z, lam_min_ratio=0.02)
    assert path.l0_at(path.lambda_max) == 0
    assert path.lambda_for_l0(0) == path.lambda_max
    prev_lam = path.lambda_max
    for n in (1, 2, 5, 10, 20, 40):
        lam = path.lambda_for_l0(n)
        assert path.lam_min <= lam <= prev_lam
        assert path.l0_at(lam) >= n
        # Sparsest such lambda: just above it (previous piece) fewer than n concepts are active.
        i = int(np.searchsorted(-path.knots, -lam)) - 1
        if i >= 1:
            assert path.l0_at(0.5 * (path.knots[i - 1] + path.knots[i])) < n
        prev_lam = lam
    # l0 is "monotone-ish": over the whole range it grows from 0 to its maximum at the bottom.
    l0s = [path.l0_at(lam) for lam in np.linspace(path.lambda_max, path.lam_min, 50)]
    assert l0s[0] == 0 and l0s[-1] == max(l0s) and l0s[-1] > 40
    assert path.lambda_for_l0(10**6) == path.lam_min


def test_below_lam_min_raises_clear_error():
    C, z = random_problem(2000, 64, seed=8)
    path = compute_path(C, z, lam_min_ratio=0.5)
    assert path.lam_min == pytest.approx(0.5 * path.lambda_max)
    path.weights_at(path.lam_min)  # the bottom knot itself is covered
    with pytest.raises(ValueError, match="below the lowest lambda"):
        path.weights_at(0.4 * path.lambda_max)


def test_full_path_to_zero_reaches_interpolation():
    """lam_min_ratio=0 runs to lambda=0: the bottom is the least-squares non-negative fit (d < k)."""
    C, z = random_problem(400, 32, seed=12)
    path = compute_path(C, z)
    assert isinstance(path, LassoPath)
    assert path.lam_min <= 1e-9 * path.lambda_max or path.stop_reason == "rank"
    w = path.weights_at(path.lam_min)
    assert np.count_nonzero(w) <= C.shape[1]


def test_input_validation():
    C, z = random_problem(100, 16)
    with pytest.raises(ValueError):
        solve_positive_lasso(C, z[:8], 0.1)
    with pytest.raises(ValueError):
        solve_positive_lasso(C, z, -1.0)
    with pytest.raises(ValueError):
        compute_path(C, z, exclude=[100])
    # float64 input is accepted (converted once) and gives the float32 answer.
    w = solve_positive_lasso(C.astype(np.float64), z, 0.2 * lambda_max(C, z))
    assert w.dtype == np.float32


def test_admm_reference_approaches_exact_solution():
    C, z = random_problem(300, 48, seed=13)
    lam = 0.25 * lambda_max(C, z)
    exact = solve_positive_lasso(C, z, lam)
    w_chol, it_chol = admm_reference(C, z, lam, seed=0)
    w_wood, it_wood = admm_reference(C, z, lam, seed=0, woodbury=True)
    # Both stop on the reference's tolerance before the 2000-iteration cap, within a few iterations of each other.
    assert it_chol < 2000 and it_wood < 2000
    assert abs(it_chol - it_wood) <= 5
    # Same iterates up to float32 rounding, and both close to the exact optimum.
    np.testing.assert_allclose(w_chol, w_wood, atol=1e-3)
    o = objective(C, z, exact, lam)
    assert objective(C, z, w_chol, lam) == pytest.approx(o, rel=1e-3)
    assert (w_chol >= 0).all()


def test_duplicate_concepts_do_not_stop_the_path():
    """Real vocabularies can hold concepts with identical embeddings (e.g. case variants after tokenisation)."""
    C0, z, support = planted_problem(2000, 64, seed=14, noise=0.3)
    C = np.ascontiguousarray(np.vstack([C0, C0[support], C0[:20]]))  # exact duplicates of planted atoms and others
    lmax = lambda_max(C, z)
    path = compute_path(C, z, lam_min_ratio=0.05)
    assert path.stop_reason == "target" and path.lam_min == pytest.approx(0.05 * lmax)
    lams = lmax * np.array([0.7, 0.3, 0.1, 0.05])
    refs = sklearn_chain(C, z, lams)
    for lam, ref in zip(lams, refs):
        for w in (path.weights_at(lam), solve_positive_lasso(C, z, lam)):
            # The minimiser is not unique (weight may split between duplicates): compare objectives and KKT.
            o, o_ref = objective(C, z, w, lam), objective(C, z, ref, lam)
            assert abs(o - o_ref) <= OBJ_RTOL * o_ref
            assert kkt_violation(C, z, w, lam) < 1e-6


def test_path_progress_reports_share_of_lambda_range():
    C, z = random_problem(3000, 64, seed=15)
    seen: list[tuple[int, int, str]] = []
    path = compute_path(C, z, lam_min_ratio=0.05, progress=lambda done, total, msg: seen.append((done, total, msg)))
    dones = [d for d, _, _ in seen]
    assert seen and all(t == 1000 for _, t, _ in seen)
    assert dones == sorted(dones) and dones[-1] == 1000
    assert str(len(path)) in seen[-1][2]
