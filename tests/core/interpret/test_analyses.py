"""Each analysis on synthetic data with a planted answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splice_desktop.core.interpret.analyses import (AGG_ALL, AGG_LAST4, AnalysisError, InterpretSession,
                                                    contrastive_maps, image_nn, property_nn, text_nn, top_k,
                                                    topic_map, upsample)
from splice_desktop.core.interpret.heads import HeadDecomposition

E = 8


class FakePool:
    """K images, layers (8, 9), 4 heads; head (9, 2) writes a planted direction with a known per-image weight."""

    def __init__(self, K: int = 50, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.layers = (8, 9)
        self.planted = np.eye(E, dtype=np.float32)[0]
        self.weight = rng.permutation(K).astype(np.float32) / K
        self.data = {(l, h): (0.05 * rng.normal(size=(K, E))).astype(np.float32) for l in self.layers for h in range(4)}
        self.data[(9, 2)][:, 0] = 0.0  # the planted head's noise is orthogonal to its planted direction
        self.data[(9, 2)] += np.outer(self.weight, self.planted)
        self._paths = [Path(f"img{i}.jpg") for i in range(K)]

    def __len__(self) -> int:
        return len(self._paths)

    def head_matrix(self, layer, head):
        return self.data[(layer, head)]

    @property
    def paths(self):
        return self._paths


def test_top_k_order_and_ties() -> None:
    s = np.array([0.1, 0.9, 0.5, 0.9, -1.0], dtype=np.float32)
    assert top_k(s, 3).tolist() == [1, 3, 2]
    assert top_k(s, 10).tolist() == [1, 3, 2, 0, 4]
    assert top_k(s, 0).size == 0


def test_text_nn_finds_images_the_planted_head_writes_most() -> None:
    pool = FakePool()
    res = text_nn(pool, pool.planted * 3, 9, 2, k=3)  # unnormalised input is normalised
    assert res.indices.tolist() == np.argsort(-pool.weight)[:3].tolist()
    assert res.searched == 50 and len(res.paths) == 3
    other = text_nn(pool, pool.planted, 9, 1, k=3)
    assert set(other.indices.tolist()) != set(res.indices.tolist())


def test_image_nn_and_property_nn_use_the_chosen_heads() -> None:
    pool = FakePool()
    best = int(np.argmax(pool.weight))
    query = pool.data[(9, 2)][best]
    res = image_nn(pool, query, 9, 2)
    assert res.indices[0] == best and len(res.indices) == 8
    parts = {(9, 2): query, (8, 0): pool.data[(8, 0)][best]}
    prop = property_nn(pool, parts, [(9, 2), (8, 0)], k=4, name="planted")
    assert prop.indices[0] == best and len(prop.indices) == 4
    # raw dot with the mean of the heads' parts
    g = (query + parts[(8, 0)]) / 2
    G = (pool.data[(9, 2)] + pool.data[(8, 0)]) / 2
    np.testing.assert_allclose(prop.scores, np.sort(G @ g)[::-1][:4], rtol=1e-5)
    with pytest.raises(AnalysisError, match="Layer 3"):
        image_nn(pool, query, 3, 0)
    with pytest.raises(AnalysisError, match="no heads"):
        property_nn(pool, parts, [])


def _synthetic_decomposition() -> HeadDecomposition:
    """2 layers, 2 heads, 2x2 patches; patch 2 of L1.H1 writes e0 strongly, patch 0 of L0.H0 writes e1."""
    L, H, T, d = 2, 2, 5, E
    attn = np.full((1, L, H, T), 1.0 / T, dtype=np.float32)
    values = np.zeros((1, L, T, H, d), dtype=np.float32)
    values[0, 1, 3, 1, 0] = 10.0  # token 3 = patch 2
    values[0, 0, 1, 0, 1] = 5.0  # token 1 = patch 0
    Q = np.tile(np.eye(d, E, dtype=np.float32), (L, H, 1, 1))
    z = np.zeros((1, L, E), dtype=np.float32)
    return HeadDecomposition(embedding=np.zeros((1, E), np.float32), layers=(0, 1), num_layers=L, attn=attn,
                             values=values, Q=Q, mlp=z, embed_term=np.zeros((1, E), np.float32), layer_attn=z,
                             kappa=np.full((1, L, E), 0.01, np.float32), scale=np.ones(1, np.float32), grid=(2, 2))


def test_topic_map_peaks_at_planted_patch() -> None:
    dec = _synthetic_decomposition()
    e0 = np.eye(E, dtype=np.float32)[0]
    m = topic_map(dec, e0, layer=1, head=1)
    assert m.values.shape == (2, 2) and np.unravel_index(np.argmax(m.values), (2, 2)) == (1, 0)
    assert np.isclose(m.values.max(), 10.0 / 5 + 0.01)  # A * v.t * scale + kappa.t: warm = high
    agg = topic_map(dec, e0, aggregate=AGG_ALL)
    assert np.unravel_index(np.argmax(agg.values), (2, 2)) == (1, 0)
    assert topic_map(dec, e0, layer=0, head=0).values.max() < 0.1
    assert topic_map(dec, e0, aggregate=AGG_LAST4).values.shape == (2, 2)


def test_contrastive_is_aggregate_and_symmetric() -> None:
    dec = _synthetic_decomposition()
    e0, e1 = np.eye(E, dtype=np.float32)[:2]
    c = contrastive_maps(dec, e0, e1)
    assert np.unravel_index(np.argmax(c.first), (2, 2)) == (1, 0)  # e0's patch (from layer 1)
    assert np.unravel_index(np.argmax(c.second), (2, 2)) == (0, 0)  # e1's patch (from layer 0: aggregate!)
    np.testing.assert_array_equal(c.first, -c.second)
    assert np.isclose(c.limit, np.abs(c.first).max())


def test_upsample_nearest_has_no_blur() -> None:
    v = np.arange(4, dtype=np.float32).reshape(2, 2)
    up = upsample(v, (6, 4))
    assert set(np.unique(up)) == {0, 1, 2, 3}
    assert (up[:3, :2] == 0).all() and (up[3:, 2:] == 3).all()
    smooth = upsample(v, (6, 4), smooth=True)
    assert len(np.unique(smooth)) > 4 and smooth.min() >= 0 and smooth.max() <= 3


def test_session_caches_forward_and_texts(tiny_model, photo_factory) -> None:
    session = InterpretSession(tiny_model)
    img = photo_factory("a.jpg", seed=1)
    session.set_image(img)
    session.set_image(img)
    assert session.forward_count == 1
    m1 = session.topic("a red car", layer=1, head=0)
    m2 = session.topic("a red car", aggregate=AGG_ALL)
    assert m1.values.shape == m2.values.shape == session.decomposition.grid
    c = session.contrastive("a red car", "a blue sky")
    np.testing.assert_array_equal(c.first, -c.second)
    assert session.forward_count == 1 and len(session._texts) == 2
