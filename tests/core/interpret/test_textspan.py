"""TEXTSPAN: the fast r-dim loop equals the published full-space loop, and finds planted directions."""

from __future__ import annotations

import numpy as np
import pytest

from splice_desktop.core.interpret.textspan import describe_heads, textspan


def _naive(C: np.ndarray, R: np.ndarray, m: int, rank: int) -> list[int]:
    """The report's loop literally (compute_complete_text_set.py), in full E dimensions."""
    C = C.astype(np.float64)
    R = R.astype(np.float64)
    _, _, vh = np.linalg.svd(C, full_matrices=False)
    vh = vh[:rank]
    R = R @ vh.T @ vh
    C = C - C.mean(axis=0, keepdims=True)
    picks = []
    for _ in range(m):
        proj = C @ R.T
        std = proj.std(axis=0)
        std[picks] = -1
        j = int(np.argmax(std))
        t = R[j]
        picks.append(j)
        C = C - np.outer(C @ t / (t @ t), t)
        R = R - np.outer(R @ t / (t @ t), t)
    return picks


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("K,E,M,rank", [(60, 16, 200, 8), (40, 24, 300, 80)])
def test_matches_published_loop(K: int, E: int, M: int, rank: int) -> None:
    rng = np.random.default_rng(K)
    C = (rng.normal(size=(K, E)) * rng.uniform(0.1, 2.0, size=E)).astype(np.float32)
    R = _unit_rows(rng.normal(size=(M, E)))
    res = textspan(C, R, m=6, rank=rank)
    assert list(res.indices) == _naive(C, R, 6, rank)
    assert len(set(res.indices)) == 6
    assert all(0 <= e <= 1 for e in res.explained) and res.explained_total <= 1 + 1e-9


def test_planted_directions_are_found_in_variance_order() -> None:
    rng = np.random.default_rng(0)
    E, K = 32, 500
    R = _unit_rows(rng.normal(size=(400, E)))
    planted = [17, 250, 3]
    sd = [3.0, 2.0, 1.0]
    coeff = rng.normal(size=(K, 3)) * np.array(sd)
    C = coeff @ R[planted] + 0.01 * rng.normal(size=(K, E)) + 0.5 * R[99]  # + a constant offset (not variance)
    texts = [f"text {i}" for i in range(400)]
    res = textspan(C.astype(np.float32), R, m=3, texts=texts)
    assert list(res.indices) == planted
    assert res.texts == ("text 17", "text 250", "text 3")
    assert res.explained_total > 0.95


def test_describe_heads_caches_per_head(tiny_model, tmp_path) -> None:
    from splice_desktop.core.interpret.text_pool import pool_from_texts

    pool = pool_from_texts(["a red car", "a blue sky", "a dog", "a cat on a mat", "the letter A", "a beach"], "t")
    rng = np.random.default_rng(1)
    data = {(1, h): rng.normal(size=(20, tiny_model.embed_dim)).astype(np.float32) for h in range(2)}
    calls = []

    def outputs(layer, head):
        calls.append((layer, head))
        return data[(layer, head)]

    first = describe_heads(tiny_model, outputs, [(1, 0), (1, 1)], pool, m=3)
    again = describe_heads(tiny_model, outputs, [(1, 0), (1, 1)], pool, m=3)
    assert first == again
    assert all(len(r.texts) == 3 and set(r.texts) <= set(pool.texts) for r in first.values())
    # other pool data -> recomputed, not a stale cache hit
    data[(1, 0)] = data[(1, 0)][::-1] * 2 + 1
    third = describe_heads(tiny_model, outputs, [(1, 0)], pool, m=3)
    assert third[(1, 0)].num_images == 20
