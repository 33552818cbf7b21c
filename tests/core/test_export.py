"""CSV / JSON export: written atomically, read back, metadata (model label, meaningless flag) carried along."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from splice_desktop import __version__
from splice_desktop.core.concepts import ConceptBank, center_concepts
from splice_desktop.core.decompose import Decomposer, EditState
from splice_desktop.core.export import (
    CSV_COLUMNS,
    ExportMeta,
    decomposition_rows,
    write_decomposition_csv,
    write_decomposition_json,
)
from splice_desktop.core.image_mean import ImageMean
from splice_desktop.core.vocab import vocabulary_from_words


@pytest.fixture(scope="module")
def items():
    rng = np.random.default_rng(0)
    k, d = 300, 32
    C, mean = center_concepts(rng.normal(size=(k, d)).astype(np.float32) + 0.2)
    words = [f"w{i}" for i in range(k - 2)] + ["ice cream", 'say "cheese", please']  # CSV-hostile names
    bank = ConceptBank(vocabulary_from_words(words), C, mean, "m")
    # make the two hostile concepts the most relevant for the first image
    z1 = (C[k - 1] + 0.8 * C[k - 2]).astype(np.float32)
    z1 /= np.linalg.norm(z1)
    z2 = rng.normal(size=d).astype(np.float32)
    z2 /= np.linalg.norm(z2)
    dec_ = Decomposer(bank, ImageMean.absent())
    d1 = dec_.decompose(z1, 0.4 * dec_.lambda_max(z1))
    d2 = dec_.decompose(z2, 0.3 * dec_.lambda_max(z2))
    empty = dec_.decompose(z2, 2 * dec_.lambda_max(z2))  # nothing active
    edited = dec_.edit(z1, d1, EditState(removed=frozenset({d1.words[0]})))
    return [(Path("a/one.jpg"), d1), (Path("b/two, with comma.png"), d2), ("three.jpg", empty), ("one-edit", edited)]


META = ExportMeta(model_label="tiny (meaningless)", meaningless=True, vocab_source="v.txt", vocab_size=300,
                  image_mean_source="none")


def test_rows_rank_and_empty_image(items) -> None:
    path, dec = items[0]
    rows = decomposition_rows(path, dec, META)
    assert [r["rank"] for r in rows] == list(range(1, dec.l0 + 1))
    assert [r["concept"] for r in rows] == list(dec.words)
    assert all(r["meaningless"] is True and r["model"] == META.model_label for r in rows)
    assert len(decomposition_rows(path, dec, META, top=2)) == min(2, dec.l0)
    empty_rows = decomposition_rows("three.jpg", items[2][1], META)
    assert len(empty_rows) == 1 and empty_rows[0]["rank"] == 0 and empty_rows[0]["concept"] == ""


def test_csv_round_trip(tmp_path: Path, items) -> None:
    out = write_decomposition_csv(tmp_path / "sub" / "out.csv", items, META)
    assert out.is_file() and not list(out.parent.glob(".*.tmp"))
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    expected = sum(max(1, dec.l0) for _, dec in items)
    assert len(rows) == expected
    for image, dec in items:
        mine = [r for r in rows if r["image"] == str(image)]
        assert len(mine) == max(1, dec.l0)
        if dec.l0:
            assert [r["concept"] for r in mine] == list(dec.words)
            np.testing.assert_allclose([float(r["weight"]) for r in mine], dec.weights, rtol=1e-7)
        assert {float(r["cosine"]) for r in mine} == {dec.cosine}
        assert {float(r["centred_cosine"]) for r in mine} == {dec.centred_cosine}
        assert {int(r["l0"]) for r in mine} == {dec.l0}
        assert {float(r["lambda"]) for r in mine} == {dec.lam}
    assert {r["meaningless"] for r in rows} == {"true"}
    assert '"say ""cheese"", please"' in out.read_text(encoding="utf-8")  # quoting, not a broken row


def test_json_round_trip(tmp_path: Path, items) -> None:
    out = write_decomposition_json(tmp_path / "out.json", items, META)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(data, list) and len(data) == len(items)
    for record, (image, dec) in zip(data, items):
        assert record["image"] == str(image)
        assert [c["concept"] for c in record["concepts"]] == list(dec.words)
        assert record["l0"] == dec.l0 and record["lambda"] == pytest.approx(dec.lam)
        assert record["cosine"] == pytest.approx(dec.cosine)
        assert record["centred_cosine"] == pytest.approx(dec.centred_cosine)
        assert record["model"] == META.model_label and record["meaningless"] is True
        assert record["vocabulary"] == {"source": "v.txt", "size": 300}
        assert record["image_mean_source"] == "none"
        assert record["app_version"] == __version__
    assert data[3]["mode"] == "zero" and data[3]["edits"]["removed"] == [items[0][1].words[0]]
    top = json.loads(write_decomposition_json(tmp_path / "top.json", items, META, top=1).read_text())
    assert all(len(r["concepts"]) <= 1 for r in top)


def test_writes_go_through_the_atomic_writer(tmp_path: Path, items, monkeypatch) -> None:
    """Both writers use core.cache's atomic writer (temp file + rename), so a crash never leaves half a file."""
    import splice_desktop.core.export as export

    calls: list[Path] = []
    real = export.atomic_write_text

    def spy(path, text):
        calls.append(Path(path))
        return real(path, text)

    monkeypatch.setattr(export, "atomic_write_text", spy)
    write_decomposition_json(tmp_path / "x.json", items, META)
    write_decomposition_csv(tmp_path / "x.csv", items, META)
    assert calls == [tmp_path / "x.json", tmp_path / "x.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv", "x.json"]
