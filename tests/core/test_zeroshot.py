"""Zero-shot head: class lists, prompts and ensembles, CLIP softmax, comparisons and the text-matrix cache."""

from __future__ import annotations

import numpy as np
import pytest

from splice_desktop.core import text_encoder
from splice_desktop.core.errors import VocabularyError
from splice_desktop.core.zeroshot import (
    DEFAULT_PROMPT,
    ClassSet,
    ClassSetError,
    ZeroShotHead,
    classes_from_text,
    imagenet_classes,
    load_class_file,
)

ANIMALS = ["dog", "cat", "horse", "red fox", "goldfish", "parrot", "tree frog"]


def _encode_stock(loaded, texts):
    import torch

    with torch.inference_mode():
        feats = loaded.model.encode_text(loaded.tokenizer(texts)).float()
    return torch.nn.functional.normalize(feats, dim=-1).numpy()


def test_imagenet_classes_keep_label_order_and_duplicates():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes.names[0] == "tench"
    assert classes.names.count("sunglasses") == 2  # open_clip's list; index must stay the label


def test_classes_from_text_and_file(tmp_path):
    assert classes_from_text("dog, cat ,, bird").names == ("dog", "cat", "bird")
    assert classes_from_text("dog\n\n  red fox \ncat\ndog\n").names == ("dog", "red fox", "cat")
    assert classes_from_text("tiger cat, felis\nlion").names == ("tiger cat, felis", "lion")  # lines win
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffcar\r\ntruck\r\n".encode("utf-8"))
    loaded = load_class_file(path)
    assert loaded.names == ("car", "truck") and loaded.source == str(path)
    assert loaded.sha256 == classes_from_text("car,truck").sha256
    path.write_bytes("car\ncami\xf3n\n".encode("latin-1"))
    with pytest.raises(VocabularyError, match="line 2"):
        load_class_file(path)
    with pytest.raises(ClassSetError, match="at least two"):
        classes_from_text("dog")
    with pytest.raises(ClassSetError):
        classes_from_text("  \n ,, ")


def test_single_prompt_matrix_matches_stock_clip(tiny_model):
    head = ZeroShotHead(tiny_model, ClassSet(tuple(ANIMALS), "animals"), use_cache=False)
    expected = _encode_stock(tiny_model, [DEFAULT_PROMPT.format(n) for n in ANIMALS])
    np.testing.assert_allclose(head.text_matrix, expected, atol=1e-4)
    assert head.text_matrix.dtype == np.float32 and head.text_matrix.shape == (7, tiny_model.embed_dim)
    with pytest.raises(ClassSetError, match="must contain"):
        ZeroShotHead(tiny_model, ClassSet(("a", "b"), "x"), prompt="no placeholder")


def test_ensemble_is_mean_of_normalised_prompts_renormalised(tiny_model):
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    names = ("dog", "red fox", "parrot")
    head = ZeroShotHead(tiny_model, ClassSet(names, "ens"), ensemble=True, use_cache=False)
    assert len(head.templates) == len(OPENAI_IMAGENET_TEMPLATES) == 80
    rows = []
    for name in names:
        emb = _encode_stock(tiny_model, [t(name) for t in OPENAI_IMAGENET_TEMPLATES]).mean(axis=0)
        rows.append(emb / np.linalg.norm(emb))
    np.testing.assert_allclose(head.text_matrix, np.stack(rows), atol=1e-4)


def test_probabilities_are_clip_softmax(tiny_model):
    head = ZeroShotHead(tiny_model, ClassSet(tuple(ANIMALS), "animals"))
    expected_scale = min(float(tiny_model.model.logit_scale.detach().exp()), 100.0)
    assert head.logit_scale == pytest.approx(expected_scale, rel=1e-6)
    Z = np.random.default_rng(0).normal(size=(4, tiny_model.embed_dim)).astype(np.float32)
    P = head.probabilities(Z)
    Zu = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    logits = expected_scale * (Zu @ head.text_matrix.T).astype(np.float64)
    ref = np.exp(logits - logits.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(P, ref, atol=1e-6)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(head.probabilities(Z[1]), P[1], atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        head.probabilities(np.ones(3, np.float32))


def test_planted_embedding_ranks_its_class_first(tiny_model):
    head = ZeroShotHead(tiny_model, ClassSet(tuple(ANIMALS), "animals"))
    for i, name in enumerate(ANIMALS):
        probs = head.probabilities(head.text_matrix[i])
        assert int(np.argmax(probs)) == i, name


def test_compare_rows_shifts_and_ranks(tiny_model):
    head = ZeroShotHead(tiny_model, ClassSet(tuple(ANIMALS), "animals"))
    T = np.asarray(head.text_matrix)
    original, recomposed, edited = T[0], 0.6 * T[0] + 0.4 * T[3], T[5]

    plain = head.compare(original, recomposed, k=2)
    assert not plain.has_edit and plain.p_edited is None
    assert all(r.p_edited is None and r.shift == 0.0 and r.rank_edited is None for r in plain.rows)
    assert plain.top1("original") == "dog"
    np.testing.assert_array_equal(plain.shifts, 0.0)

    cmp = head.compare(original, recomposed, edited, k=2)
    assert cmp.has_edit and cmp.top1("edited") == "parrot" and cmp.meaningless
    assert abs(cmp.shifts.sum()) < 1e-9  # probability mass only moves between classes
    expected = set()
    for p in (cmp.p_original, cmp.p_recomposed, cmp.p_edited):
        expected.update(np.argsort(-p)[:2].tolist())
    assert {r.index for r in cmp.rows} == expected
    latest = [r.p_edited for r in cmp.rows]
    assert latest == sorted(latest, reverse=True)
    for r in cmp.rows:
        assert r.shift == pytest.approx(r.p_edited - r.p_recomposed, abs=1e-12)
        assert r.p_original == pytest.approx(cmp.p_original[r.index])
        assert r.name == ANIMALS[r.index]
    assert cmp.rows[0].rank_edited == 1
    table = cmp.to_rows()
    assert table[0]["class"] == "parrot" and set(table[0]) >= {"p_original", "p_recomposed", "p_edited", "shift"}


def test_text_matrix_cache_reuse_and_keys(tiny_model, monkeypatch):
    classes = ClassSet(("snow leopard", "sea otter", "koala"), "cache-test")
    first = ZeroShotHead(tiny_model, classes)
    first.cache_path.unlink(missing_ok=True)
    seen = []
    matrix = np.array(first.prepare(progress=lambda d, t, m: seen.append((d, t))))
    assert not first.from_cache and first.cache_path.is_file() and seen[-1] == (3, 3)

    def _boom(*a, **k):
        raise AssertionError("encoder called on a cache hit")

    monkeypatch.setattr(text_encoder, "encode_texts", _boom)
    again = ZeroShotHead(tiny_model, classes)
    np.testing.assert_array_equal(again.text_matrix, matrix)
    assert again.from_cache

    other_prompt = ZeroShotHead(tiny_model, classes, prompt="A drawing of a {}.")
    ensemble = ZeroShotHead(tiny_model, classes, ensemble=True)
    other_classes = ZeroShotHead(tiny_model, ClassSet(("snow leopard", "sea otter"), "cache-test-2"))
    paths = {first.cache_path, other_prompt.cache_path, ensemble.cache_path, other_classes.cache_path}
    assert len(paths) == 4
    for head in (other_prompt, ensemble, other_classes):
        with pytest.raises(AssertionError, match="encoder called"):
            head.prepare()
