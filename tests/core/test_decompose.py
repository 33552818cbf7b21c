"""Decomposition: authors' centring/recomposition, cosines, edits (zero vs resolve), planted recovery, path LRU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from splice_desktop.core.concepts import ConceptBank, center_concepts
from splice_desktop.core.decompose import (
    Decomposer,
    EditError,
    EditState,
    UnknownConceptError,
    center_image,
    recompose,
)
from splice_desktop.core.image_mean import ImageMean
from splice_desktop.core.solvers import kkt_violation, objective, solve_positive_lasso
from splice_desktop.core.vocab import vocabulary_from_words


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _bank(k: int = 600, d: int = 48, seed: int = 0) -> ConceptBank:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(k, d)).astype(np.float32) + 0.3  # a shared offset, like real text embeddings
    C, mean = center_concepts(raw)
    vocab = vocabulary_from_words([f"concept{i:04d}" for i in range(k)], source="test words")
    return ConceptBank(vocab, C, mean, "test-model")


def _mean(d: int, seed: int = 1, norm: float = 0.56) -> ImageMean:
    rng = np.random.default_rng(seed)
    return ImageMean(vector=(norm * _unit(rng.normal(size=d))).astype(np.float32), source="test mean")


def _embedding(d: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _unit(rng.normal(size=d)).astype(np.float32)


def _embedding_with_centred(z_tilde: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """A unit z with normalize(z - mu) == z_tilde: z = mu + t z_tilde with ||z|| = 1."""
    b = float(mu @ z_tilde)
    t = -b + np.sqrt(b * b + 1.0 - float(mu @ mu))
    return (mu + t * z_tilde).astype(np.float32)


@pytest.fixture(scope="module")
def setup():
    bank = _bank()
    mean = _mean(bank.dim)
    return bank, mean, Decomposer(bank, mean)


# ------------------------------------------------------------------ centring and recomposition


def test_center_image_matches_authors_formula() -> None:
    d = 16
    z, mu = _embedding(d), _mean(d).vector
    expected = (z - mu) / np.linalg.norm(z - mu)
    np.testing.assert_allclose(center_image(z, ImageMean(mu, "m")), expected, atol=1e-6)
    np.testing.assert_allclose(center_image(z, mu), expected, atol=1e-6)  # a raw vector works too
    np.testing.assert_allclose(center_image(3 * z, None), z, atol=1e-6)  # no mean: only normalised
    assert center_image(z, ImageMean.absent()).dtype == np.float32


def test_recompose_is_authors_definition() -> None:
    bank = _bank(k=50, d=12)
    mu = _mean(12).vector
    rng = np.random.default_rng(5)
    w = np.zeros(50, dtype=np.float32)
    w[[3, 7, 20]] = rng.uniform(0.05, 0.5, size=3)
    C64 = bank.matrix.astype(np.float64)
    part = C64.T @ w
    expected = part / np.linalg.norm(part) + mu
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(recompose(w, bank.matrix, mu), expected, atol=1e-6)
    # the scale of w is discarded
    np.testing.assert_allclose(recompose(5 * w, bank.matrix, mu), expected, atol=1e-6)
    # w = 0: normalize(mu); without a mean: the zero vector (F.normalize(0) = 0)
    np.testing.assert_allclose(recompose(np.zeros(50), bank.matrix, mu), mu / np.linalg.norm(mu), atol=1e-6)
    assert not np.any(recompose(np.zeros(50), bank.matrix, None))


def test_recompose_inverts_centring_when_exact() -> None:
    """If C^T w points exactly along z_tilde, recomposition gives back the direction of z_tilde + mu."""
    bank = _bank(k=40, d=10)
    mu = _mean(10).vector
    w = np.zeros(40, dtype=np.float32)
    w[4] = 1.0
    z_tilde = bank.matrix[4]
    z = _embedding_with_centred(z_tilde, mu)
    np.testing.assert_allclose(center_image(z, mu), z_tilde, atol=1e-5)
    np.testing.assert_allclose(recompose(w, bank.matrix, mu), _unit(z_tilde + mu), atol=1e-5)


# ------------------------------------------------------------------ decomposition


def test_decomposition_fields_and_cosines(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=11)
    z_tilde = center_image(z, mean)
    lmax = 2 * float(np.max(bank.matrix.astype(np.float64) @ z_tilde))
    dec = dec_.decompose(z, 0.3 * lmax)
    assert dec.lambda_max == pytest.approx(lmax, rel=1e-5)
    assert dec.l0 == np.count_nonzero(dec.dense) == len(dec.words) == len(dec.weights) > 0
    assert np.all(np.diff(dec.weights) <= 0), "weights must be sorted descending"
    for word, weight in zip(dec.words, dec.weights):
        assert dec.dense[bank.index(word)] == weight > 0
    # optimality of the weights (KKT), so the decomposition really solves the SpLiCE objective
    assert kkt_violation(bank.matrix, z_tilde, dec.dense, dec.lam) < 1e-4
    # cosines computed independently in float64
    C64 = bank.matrix.astype(np.float64)
    part = C64.T @ dec.dense.astype(np.float64)
    z_hat = _unit(_unit(part) + mean.vector)
    np.testing.assert_allclose(dec.z_hat, z_hat, atol=1e-5)
    assert dec.cosine == pytest.approx(float(z_hat @ z), abs=1e-5)
    assert dec.centred_cosine == pytest.approx(float(_unit(part) @ z_tilde), abs=1e-5)
    assert dec.image_mean_present and dec.mode == "original" and dec.edits.is_empty
    assert dec.top(2) == [(dec.words[0], float(dec.weights[0])), (dec.words[1], float(dec.weights[1]))]
    assert dec.top(0) == [] and len(dec.top()) == dec.l0
    with pytest.raises(ValueError):
        dec.weights[0] = 1.0  # results are read-only


def test_lambda_at_or_above_lambda_max_gives_empty_decomposition(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=12)
    lmax = dec_.lambda_max(z)
    for lam in (lmax, 1.5 * lmax):
        dec = dec_.decompose(z, lam)
        assert dec.l0 == 0 and dec.words == () and dec.centred_cosine == 0.0
        np.testing.assert_allclose(dec.z_hat, _unit(mean.vector), atol=1e-6)
    # just below lambda_max exactly one concept is active: the most correlated one
    dec = dec_.decompose(z, 0.999 * lmax)
    assert dec.l0 == 1
    assert dec.words[0] == bank.words[int(np.argmax(bank.matrix @ center_image(z, mean)))]
    with pytest.raises(ValueError):
        dec_.decompose(z, -0.1)


def test_path_lookup_agrees_with_direct_solve(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=13)
    path = dec_.path(z)
    z_tilde = center_image(z, mean)
    for frac in (0.9, 0.5, 0.25):
        lam = frac * path.lambda_max
        a = dec_.decompose(z, lam, path=path)
        b = dec_.decompose(z, lam)
        assert a.words == b.words
        np.testing.assert_allclose(a.dense, b.dense, atol=1e-5)
        assert objective(bank.matrix, z_tilde, a.dense, lam) == pytest.approx(
            objective(bank.matrix, z_tilde, b.dense, lam), rel=1e-6
        )


def test_path_cache_is_an_lru(setup) -> None:
    bank, mean, _ = setup
    dec_ = Decomposer(bank, mean, path_cache_size=2)
    z1, z2, z3 = (_embedding(bank.dim, seed=s) for s in (21, 22, 23))
    p1 = dec_.path(z1)
    assert dec_.path(z1) is p1 and dec_.cached_path(z1) is p1
    dec_.path(z2)
    dec_.path(z1)  # z1 becomes most recent, so z3 evicts z2
    dec_.path(z3)
    assert dec_.cached_path(z1) is p1
    assert dec_.cached_path(z2) is None
    assert dec_.cached_path(z3) is not None


def test_below_the_path_floor_falls_back_to_an_exact_solve(setup) -> None:
    bank, mean, _ = setup
    dec_ = Decomposer(bank, mean)
    z = _embedding(bank.dim, seed=24)
    path = dec_.path(z, lam_min_ratio=0.5)
    assert path.lam_min == pytest.approx(0.5 * path.lambda_max)
    lam = 0.3 * path.lambda_max
    below = dec_.decompose(z, lam, path=path)
    direct = dec_.decompose(z, lam)
    np.testing.assert_allclose(below.dense, direct.dense, atol=1e-6)
    assert below.lambda_max == pytest.approx(direct.lambda_max, rel=1e-5)
    # asking for a deeper path recomputes; a shallower request reuses the deeper cached one
    deeper = dec_.path(z, lam_min_ratio=0.2)
    assert deeper is not path and deeper.lam_min < path.lam_min
    assert dec_.path(z, lam_min_ratio=0.6) is deeper


def test_planted_concepts_are_recovered() -> None:
    bank = _bank(k=2000, d=64, seed=3)
    mean = _mean(64, seed=4)
    planted = ["concept0042", "concept0777", "concept1500"]
    coef = np.array([0.6, 0.3, 0.15])
    z_tilde = _unit(sum(c * bank.matrix[bank.index(w)].astype(np.float64) for c, w in zip(coef, planted)))
    z = _embedding_with_centred(z_tilde.astype(np.float32), mean.vector)
    dec_ = Decomposer(bank, mean)
    dec = dec_.decompose(z, 0.05 * dec_.lambda_max(z))
    assert set(dec.words[:3]) == set(planted)
    assert list(dec.words[:3]) == planted  # ordered by planted weight
    assert dec.centred_cosine > 0.99


def test_without_image_mean(setup) -> None:
    bank, _, _ = setup
    dec_ = Decomposer(bank, ImageMean.absent())
    z = _embedding(bank.dim, seed=14)
    dec = dec_.decompose(z, 0.3 * dec_.lambda_max(z))
    assert not dec.image_mean_present
    # without a mean the two cosines coincide (z_tilde = z, z_hat = normalize(C^T w))
    assert dec.cosine == pytest.approx(dec.centred_cosine, abs=1e-5)
    with pytest.raises(ValueError):
        Decomposer(bank, np.ones(bank.dim + 1, dtype=np.float32))


# ------------------------------------------------------------------ edits


def test_empty_edit_equals_base(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=15)
    base = dec_.decompose(z, 0.3 * dec_.lambda_max(z))
    for mode in ("zero", "resolve"):
        same = dec_.edit(z, base, EditState(mode=mode))
        np.testing.assert_array_equal(same.dense, base.dense)
        np.testing.assert_array_equal(same.z_hat, base.z_hat)
        assert same.words == base.words and same.cosine == base.cosine and same.mode == "original"


def test_zero_mode_is_the_authors_intervention(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=16)
    base = dec_.decompose(z, 0.2 * dec_.lambda_max(z))
    assert base.l0 >= 3
    gone, doubled = base.words[0], base.words[1]
    edited = dec_.edit(z, base, EditState(removed=frozenset({gone}), scales={doubled: 2.0}, mode="zero"))
    expected = base.dense.copy()
    expected[bank.index(gone)] = 0
    expected[bank.index(doubled)] *= 2
    np.testing.assert_allclose(edited.dense, expected)
    np.testing.assert_allclose(edited.z_hat, recompose(expected, bank.matrix, mean), atol=1e-6)
    assert gone not in edited.words and edited.l0 == base.l0 - 1
    assert edited.mode == "zero" and edited.lam == base.lam and edited.lambda_max == base.lambda_max
    assert edited.cosine != pytest.approx(base.cosine)
    # the keyword form builds the same edit
    again = dec_.edit(z, base, removed=[gone], scales={doubled: 2.0})
    np.testing.assert_array_equal(again.dense, edited.dense)


def test_resolve_mode_excludes_and_compensates(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=17)
    base = dec_.decompose(z, 0.3 * dec_.lambda_max(z))
    removed = set(base.words[:2])
    zero = dec_.edit(z, base, EditState(removed=frozenset(removed), mode="zero"))
    res = dec_.edit(z, base, EditState(removed=frozenset(removed), mode="resolve"))
    idx = [bank.index(w) for w in removed]
    assert np.all(res.dense[idx] == 0) and not removed & set(res.words)
    assert res.mode == "resolve"
    assert not np.allclose(res.dense, zero.dense), "re-solving must let other concepts compensate"
    # the re-solve is optimal for the dictionary without the removed concepts
    keep = np.setdiff1d(np.arange(len(bank)), idx)
    z_tilde = center_image(z, mean)
    assert kkt_violation(bank.matrix[keep], z_tilde, res.dense[keep], base.lam) < 1e-4
    # and reconstructs the centred image better than just zeroing
    assert res.centred_cosine > zero.centred_cosine


def test_resolve_applies_scales_after_solving(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=18)
    base = dec_.decompose(z, 0.3 * dec_.lambda_max(z))
    gone = base.words[0]
    plain = dec_.edit(z, base, EditState(removed=frozenset({gone}), mode="resolve"))
    target = plain.words[0]
    scaled = dec_.edit(z, base, EditState(removed=frozenset({gone}), scales={target: 0.5}, mode="resolve"))
    assert scaled.weight_of(target) == pytest.approx(0.5 * plain.weight_of(target))


def test_invalid_edits_give_clear_errors(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=19)
    base = dec_.decompose(z, 0.3 * dec_.lambda_max(z))
    with pytest.raises(UnknownConceptError, match="no-such-concept"):
        dec_.edit(z, base, EditState(removed=frozenset({"no-such-concept"})))
    with pytest.raises(UnknownConceptError, match="bogus"):
        dec_.edit(z, base, EditState(scales={"bogus": 2.0}))
    with pytest.raises(EditError, match="(?i)scale"):
        EditState(scales={base.words[0]: -1.0})
    with pytest.raises(EditError, match="mode"):
        EditState(mode="delete")
    edited = dec_.edit(z, base, EditState(scales={base.words[0]: 2.0}))
    with pytest.raises(EditError, match="unedited"):
        dec_.edit(z, edited, EditState(scales={base.words[0]: 2.0}))  # would silently give 4x


def test_to_dict_is_json_and_round_trips_edits(setup) -> None:
    bank, mean, dec_ = setup
    z = _embedding(bank.dim, seed=20)
    base = dec_.decompose(z, 0.3 * dec_.lambda_max(z))
    edits = EditState(removed=frozenset({base.words[0]}), scales={base.words[-1]: 1.5}, mode="resolve")
    edited = dec_.edit(z, base, edits)
    data = json.loads(json.dumps(edited.to_dict(include_dense=True)))
    assert [c["concept"] for c in data["concepts"]] == list(edited.words)
    assert data["l0"] == edited.l0 and data["mode"] == "resolve"
    assert data["cosine"] == pytest.approx(edited.cosine)
    assert len(data["dense"]) == len(bank)
    assert EditState.from_dict(data["edits"]) == edits


# ------------------------------------------------------------------ real model / reference data


def test_tiny_model_bank_decomposes(tiny_model) -> None:
    """End to end on real (random-weight) CLIP text embeddings: structure only, concepts are meaningless."""
    from splice_desktop.core.concepts import build_concept_bank

    words = ["dog", "cat", "car", "tree", "house", "red", "blue", "water", "sky", "road", "person", "bird"]
    bank = build_concept_bank(tiny_model, vocabulary_from_words(words), use_cache=False)
    dec_ = Decomposer(bank, ImageMean.absent())
    z = _unit(np.random.default_rng(0).normal(size=tiny_model.embed_dim)).astype(np.float32)
    dec = dec_.decompose(z, 0.5 * dec_.lambda_max(z))
    # Below lambda_max at least one concept is active; the result is exactly the solver's minimiser.
    expected = solve_positive_lasso(bank.matrix, center_image(z, None), dec.lam)
    np.testing.assert_allclose(dec.dense, expected, atol=1e-6)
    assert dec.l0 == int(np.count_nonzero(expected)) > 0
    assert list(dec.words) == [words[i] for i in np.argsort(-expected, kind="stable")[: dec.l0]]
    assert kkt_violation(bank.matrix, center_image(z, None), dec.dense, dec.lam) < 1e-4


def test_authors_image_mean_recomposition(ref_dir) -> None:
    """The authors' shipped mean (no weights needed): its norm is the reported 0.5601, and w = 0 recomposes to
    normalize(mu), exactly as ``recompose_image`` does with F.normalize(0) = 0."""
    from splice_desktop.core.image_mean import load_image_mean

    path = ref_dir / "splice" / "means" / "open_clip_ViT-B-32_image.pt"
    if not path.is_file():
        pytest.skip("authors' mean file not present")
    mean = load_image_mean(path, expected_dim=512)
    assert mean.norm == pytest.approx(0.5601, abs=1e-4)
    C, _ = center_concepts(np.random.default_rng(0).normal(size=(20, 512)).astype(np.float32))
    np.testing.assert_allclose(recompose(np.zeros(20), C, mean), mean.vector / mean.norm, atol=1e-6)
