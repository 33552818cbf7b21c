"""Vocabulary reading: cleaning, the SpLiCE size-k convention, hashing and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from splice_desktop.core.errors import VocabularyError
from splice_desktop.core.vocab import (
    content_sha256,
    default_vocabulary_path,
    load_vocabulary,
    vocabulary_from_words,
)


def _write(tmp_path: Path, text: str, name: str = "v.txt", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_ascending_keeps_last_k_and_plain_keeps_first_k(tmp_path):
    path = _write(tmp_path, "rare\nless\nmid\ncommon\nthe\n")
    assert load_vocabulary(path, size=2).words == ("common", "the")
    assert load_vocabulary(path, size=2, order="plain").words == ("rare", "less")
    full = load_vocabulary(path)
    assert full.words == ("rare", "less", "mid", "common", "the")
    assert load_vocabulary(path, size=-1).words == full.words
    assert load_vocabulary(path, size=2).truncated == 3
    import numpy as np

    assert load_vocabulary(path, size=np.int64(2)).words == ("common", "the")  # e.g. from a spin box model


def test_cleaning_counts_and_whitespace(tmp_path):
    text = "\ufeff  cat \r\n\n dog\t\n   \nice  cream\ncat\nbad\x00word\nbird\n"
    vocab = load_vocabulary(_write(tmp_path, text), order="plain")
    assert vocab.words == ("cat", "dog", "ice cream", "bird")
    assert vocab.dropped_blank == 2
    assert vocab.dropped_duplicate == 1
    assert vocab.dropped_other == 1
    assert "2 blank" in vocab.summary() and "1 duplicate" in vocab.summary()


def test_duplicate_keeps_highest_ranked_occurrence(tmp_path):
    # ascending: the later "dog" is the more frequent rank, so it survives and size 2 includes it
    path = _write(tmp_path, "dog\ncat\nbird\ndog\n")
    asc = load_vocabulary(path)
    assert asc.words == ("cat", "bird", "dog")
    assert load_vocabulary(path, size=2).words == ("bird", "dog")
    plain = load_vocabulary(path, order="plain")
    assert plain.words == ("dog", "cat", "bird")
    assert asc.dropped_duplicate == plain.dropped_duplicate == 1


def test_size_counts_clean_concepts_not_raw_lines(tmp_path):
    # mscoco.txt has a blank line near its end: size k must still give k real concepts
    path = _write(tmp_path, "a1\na2\na3\n\nb1\nb2\n")
    vocab = load_vocabulary(path, size=3)
    assert vocab.words == ("a3", "b1", "b2")
    assert "" not in vocab.words


def test_size_larger_than_available_is_clamped_with_note(tmp_path):
    vocab = load_vocabulary(_write(tmp_path, "x\ny\n"), size=50)
    assert vocab.words == ("x", "y")
    assert vocab.notes and "50" in vocab.notes[0]


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_bad_size(tmp_path, bad):
    with pytest.raises(VocabularyError, match="size"):
        load_vocabulary(_write(tmp_path, "x\n"), size=bad)


def test_sha_depends_on_content_and_order_not_file(tmp_path):
    a = load_vocabulary(_write(tmp_path, "x\ny\n", "a.txt"))
    b = load_vocabulary(_write(tmp_path, "\ufeffx \r\n\ny\r\n", "b.txt"))
    c = load_vocabulary(_write(tmp_path, "y\nx\n", "c.txt"))
    assert a.sha256 == b.sha256 == content_sha256(["x", "y"])
    assert a.sha256 != c.sha256
    assert load_vocabulary(_write(tmp_path, "x\ny\nz\n", "d.txt"), size=2).sha256 == content_sha256(["y", "z"])


def test_index_and_contains(tmp_path):
    vocab = load_vocabulary(_write(tmp_path, "x\ny\n"))
    assert vocab.index("y") == 1 and vocab.contains("x") and "x" in vocab and len(vocab) == 2
    assert not vocab.contains("zebra")
    with pytest.raises(KeyError, match="zebra.*not in vocabulary"):
        vocab.index("zebra")


def test_non_utf8_names_the_line(tmp_path):
    path = _write(tmp_path, "ok\nfine\ncaf\xe9\n", encoding="latin-1")
    with pytest.raises(VocabularyError, match=r"line 3.*UTF-8"):
        load_vocabulary(path)


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(VocabularyError, match="not found"):
        load_vocabulary(tmp_path / "nope.txt")
    with pytest.raises(VocabularyError, match="no concepts"):
        load_vocabulary(_write(tmp_path, "\n  \n\n"))
    with pytest.raises(VocabularyError, match="folder"):
        load_vocabulary(tmp_path)
    with pytest.raises(VocabularyError, match="order"):
        load_vocabulary(_write(tmp_path, "x\n"), order="random")


def test_vocabulary_from_words():
    vocab = vocabulary_from_words([" dog", "cat", "dog", ""], source="typed")
    assert vocab.words == ("dog", "cat") and vocab.source == "typed"
    assert vocab.dropped_duplicate == 1 and vocab.dropped_blank == 1
    assert vocab.sha256 == content_sha256(["dog", "cat"])


def test_default_vocabulary_is_clean_and_ascending():
    path = default_vocabulary_path()
    if not path.is_file():
        pytest.fail(f"{path} missing: run `python vocab/build_vocab.py`")
    raw = path.read_text(encoding="utf-8").splitlines()
    vocab = load_vocabulary(path)
    assert vocab.dropped_blank == vocab.dropped_duplicate == vocab.dropped_other == 0
    assert list(vocab.words) == raw
    assert len(vocab) >= 10_000
    assert sum(" " in w for w in vocab.words) >= 1000  # two-word phrases
    assert all(not any(ch.isdigit() for ch in w) for w in vocab.words)
    # ascending: the most frequent words are at the end
    top = set(load_vocabulary(path, size=2000).words)
    assert {"water", "people", "house"} <= top
    assert "the" not in vocab and "and" not in vocab


def test_cross_check_against_reference_laion(ref_dir):
    path = ref_dir / "splice" / "vocab" / "laion.txt"
    if not path.is_file():
        pytest.skip("laion.txt not present")
    raw = path.read_text(encoding="utf-8").split("\n")
    if raw[-1] == "":
        raw.pop()
    for k in (1, 10, 10_000):
        vocab = load_vocabulary(path, size=k)
        assert list(vocab.words) == [line.strip() for line in raw[-k:]]
    assert vocab.words[-1] == raw[-1] and vocab.index(raw[-1]) == 9_999
