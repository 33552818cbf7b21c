from __future__ import annotations

import pytest

from splice_desktop.core.interpret.text_pool import TextPoolError, default_text_pool, load_text_pool


def test_default_pool_is_large_unique_and_deterministic() -> None:
    a, b = default_text_pool(), default_text_pool()
    assert a == b and 2000 <= len(a) <= 6000
    assert len(set(a.texts)) == len(a.texts)
    joined = "\n".join(a.texts)
    for probe in ("Image with a red color", "Picture taken in Tokyo, Japan", "A photo of a dog", "The letter A",
                  "An image with three people", "A watercolor painting of a landscape", "A foggy day"):
        assert probe in joined


def test_load_text_pool_cleans_and_errors(tmp_path) -> None:
    p = tmp_path / "pool.txt"
    p.write_text("\ufeffa  red car\n\n a red car\nblue sky\n", encoding="utf-8")
    pool = load_text_pool(p)
    assert pool.texts == ("a red car", "blue sky")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(TextPoolError, match="UTF-8"):
        load_text_pool(tmp_path / "bad.txt")
    with pytest.raises(TextPoolError, match="not found"):
        load_text_pool(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(TextPoolError, match="empty"):
        load_text_pool(tmp_path / "empty.txt")
