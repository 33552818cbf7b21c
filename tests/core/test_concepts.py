"""Concept bank: the authors' centring recipe, disk cache (memory-mapped, keyed on every identity part)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from splice_desktop.core import concepts, text_encoder
from splice_desktop.core.concepts import (
    build_concept_bank,
    center_concepts,
    concept_cache_path,
    is_cached,
)
from splice_desktop.core.errors import CancelledError, VocabularyError
from splice_desktop.core.models import ModelSpec
from splice_desktop.core.progress import CancelToken
from splice_desktop.core.vocab import vocabulary_from_words

WORDS = ["dog", "cat", "red car", "mountain lake", "pizza", "guitar", "snow", "city street at night"]


def _forbid_encoder(monkeypatch):
    def _boom(*args, **kwargs):
        raise AssertionError("text encoder called although the bank should come from the cache")

    monkeypatch.setattr(text_encoder, "encode_texts", _boom)


def _n_encoded(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = text_encoder.encode_texts

    def _counting(loaded, texts, *args, **kwargs):
        calls.append(len(texts))
        return real(loaded, texts, *args, **kwargs)

    monkeypatch.setattr(text_encoder, "encode_texts", _counting)
    return calls


def test_center_concepts_matches_recipe():
    raw = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32) * 3
    C, mean = center_concepts(raw)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(mean, unit.mean(axis=0), atol=1e-6)
    expected = (unit - mean) / np.linalg.norm(unit - mean, axis=1, keepdims=True)
    np.testing.assert_allclose(C, expected, atol=1e-6)
    assert C.dtype == np.float32 and mean.dtype == np.float32 and C.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1.0, atol=1e-6)
    one, _ = center_concepts(raw[:1])
    assert np.all(np.isfinite(one))


def test_bank_is_raw_text_encoding_centred(tiny_model, monkeypatch):
    import torch

    vocab = vocabulary_from_words(WORDS, "test-raw")
    bank = build_concept_bank(tiny_model, vocab, use_cache=False)
    with torch.inference_mode():  # stock open_clip on raw words, no prompt template
        ref = tiny_model.model.encode_text(tiny_model.tokenizer(WORDS)).float()
        ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    C_ref, mean_ref = center_concepts(ref)
    np.testing.assert_allclose(bank.matrix, C_ref, atol=1e-4)
    np.testing.assert_allclose(bank.concept_mean, mean_ref, atol=1e-5)
    assert bank.matrix.shape == (len(WORDS), tiny_model.embed_dim) and bank.matrix.dtype == np.float32
    assert bank.words == tuple(WORDS) and bank.index("pizza") == 4 and len(bank) == len(WORDS)
    assert bank.model_key == tiny_model.key and not bank.from_cache
    assert not concept_cache_path(tiny_model.key, vocab.sha256).exists()  # use_cache=False writes nothing


def test_second_load_reads_memory_mapped_cache(tiny_model, monkeypatch):
    vocab = vocabulary_from_words(WORDS + ["second load"], "test-cache")
    concept_cache_path(tiny_model.key, vocab.sha256).unlink(missing_ok=True)
    seen = []
    first = build_concept_bank(tiny_model, vocab, progress=lambda d, t, m: seen.append((d, t)))
    assert seen and seen[-1] == (len(vocab), len(vocab))
    path = concept_cache_path(tiny_model.key, vocab.sha256)
    assert path.is_file() and path.name.endswith(f"-v{concepts.VERSION}.npy") and vocab.sha256[:16] in path.name
    assert is_cached(tiny_model, vocab)

    _forbid_encoder(monkeypatch)
    second = build_concept_bank(tiny_model, vocab)
    assert second.from_cache and isinstance(second.matrix, np.memmap)
    np.testing.assert_array_equal(second.matrix, first.matrix)
    np.testing.assert_array_equal(second.concept_mean, first.concept_mean)
    assert second.matrix.flags.c_contiguous and not second.matrix.flags.writeable


@pytest.mark.parametrize("change", ["model_name", "weights_fingerprint", "vocabulary", "version"])
def test_cache_invalidation(tiny_model, monkeypatch, change):
    vocab = vocabulary_from_words(WORDS + [f"invalidate {change}"], f"test-inv-{change}")
    build_concept_bank(tiny_model, vocab)
    loaded, vocab2 = tiny_model, vocab
    if change == "model_name":
        loaded = dataclasses.replace(tiny_model, spec=ModelSpec(name="other-arch", pretrained=None))
    elif change == "weights_fingerprint":
        loaded = dataclasses.replace(tiny_model, weights_fingerprint="f" * 64)
    elif change == "vocabulary":
        vocab2 = vocabulary_from_words(WORDS + ["invalidate other"], "test-inv-vocab2")
    else:
        monkeypatch.setattr(concepts, "VERSION", concepts.VERSION + 1)
    assert not is_cached(loaded, vocab2)
    calls = _n_encoded(monkeypatch)
    bank = build_concept_bank(loaded, vocab2)
    assert calls == [len(vocab2)] and not bank.from_cache
    assert is_cached(loaded, vocab2)


def test_corrupt_cache_is_rebuilt(tiny_model, monkeypatch):
    vocab = vocabulary_from_words(WORDS[:5], "test-corrupt")
    path = concept_cache_path(tiny_model.key, vocab.sha256)
    path.write_bytes(b"not an npy file")
    calls = _n_encoded(monkeypatch)
    bank = build_concept_bank(tiny_model, vocab)
    assert calls == [5] and not bank.from_cache
    np.save(path, np.zeros((3, 3), np.float32))  # wrong shape
    assert not is_cached(tiny_model, vocab)


def test_cancel_writes_nothing(tiny_model):
    vocab = vocabulary_from_words(WORDS + ["cancelled"], "test-cancel")
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        build_concept_bank(tiny_model, vocab, cancel=token)
    assert not concept_cache_path(tiny_model.key, vocab.sha256).exists()


def test_too_small_vocabulary(tiny_model):
    with pytest.raises(VocabularyError, match="at least 2"):
        build_concept_bank(tiny_model, vocabulary_from_words(["dog"], "one"))


def test_cancel_mid_encoding_writes_nothing(tiny_model):
    vocab = vocabulary_from_words(WORDS + ["cancel midway"], "test-cancel-mid")
    token = CancelToken()
    seen = []

    def progress(done, total, message):
        seen.append(done)
        if done >= 2:
            token.cancel()

    with pytest.raises(CancelledError):
        build_concept_bank(tiny_model, vocab, progress=progress, cancel=token, batch_size=2)
    assert 0 < max(seen) < len(vocab)
    assert not concept_cache_path(tiny_model.key, vocab.sha256).exists()
