"""The default-vocabulary build script: filters, order, determinism, and that the committed file is current."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("wordfreq", reason="wordfreq is a build-time dependency of vocab/build_vocab.py")

SCRIPT = Path(__file__).resolve().parents[2] / "vocab" / "build_vocab.py"


@pytest.fixture(scope="module")
def bv():
    spec = importlib.util.spec_from_file_location("build_vocab", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small(bv):
    return bv.build(n_words=1500, n_phrases=300)


def test_layout_filters_and_determinism(bv, small):
    assert len(small) == 1800 and len(set(small)) == 1800
    phrases, words = small[:300], small[300:]
    assert all(re.fullmatch(r"[a-z]+ [a-z]+", p) for p in phrases)
    assert all(re.fullmatch(r"[a-z]{3,}", w) for w in words)
    for concept in small:
        assert not set(concept.split()) & bv.REJECT, concept
    # ascending: the single-word block ends with the most frequent word
    from wordfreq import word_frequency

    freqs = [word_frequency(w, "en", wordlist="best") for w in words]
    assert freqs == sorted(freqs)
    assert small == bv.build(n_words=1500, n_phrases=300)


def test_phrases_are_tiered_most_important_last(bv, small):
    tiers = dict((p, t) for p, t, _ in bv.ranked_phrases(300))
    seq = [tiers[p] for p in small[:300]]
    assert seq == sorted(seq, reverse=True)
    assert "ice cream" in small[:300] or "hot dog" in small[:300]
    assert "old man" not in bv.phrase_candidates()  # noun.person synsets are skipped


def test_committed_file_matches_a_fresh_build(bv, tmp_path):
    if bv.source_versions() != bv.BUILT_WITH:
        pytest.skip(f"installed {bv.source_versions()} differ from the build's {bv.BUILT_WITH}")
    out = tmp_path / "v.txt"
    assert bv.main(["--output", str(out)]) == 0
    assert out.read_bytes() == bv.DEFAULT_OUTPUT.read_bytes()
    assert bv.main(["--check"]) == 0
    assert bv.main(["--check", "--output", str(tmp_path / "missing.txt")]) == 1
