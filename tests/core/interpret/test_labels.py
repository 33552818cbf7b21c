from __future__ import annotations

from splice_desktop.core.interpret.labels import (attribution, head_title, labels_for, labels_for_loaded,
                                                  properties_for, published_models)


def test_six_models_320_heads_with_attribution() -> None:
    models = published_models()
    assert len(models) == 6
    assert sum(len(m.labels) for m in models) == 320
    att = attribution()
    assert "2409.06579" in att["labels"]["paper"] and len(att["labels"]["commit"]) == 40
    assert "licence" in att["labels"] and "licence" in att["ccs"]


def test_lookup_by_name_and_tag() -> None:
    b16 = labels_for("ViT-B-16-quickgelu", "openai")
    assert b16 is not None and len(b16) == 48 and all(8 <= l <= 11 for l, _ in b16)
    assert labels_for("ViT-B-16", "openai") == b16
    assert labels_for("ViT-B-16", "some_other_tag") is None
    assert labels_for("ViT-B-16", None) is None
    props = properties_for("ViT-L-14", "laion2b_s32b_b82k")
    assert "colors" in props and all(20 <= l <= 23 for l, _ in props["colors"])
    assert properties_for("ViT-H-14", "x") == {}


def test_tiny_model_has_no_labels_and_titles(tiny_model) -> None:
    assert labels_for_loaded(tiny_model) is None
    assert head_title(3, 4) == "L3.H4"
    assert head_title(3, 4, {(3, 4): "Location."}) == "L3.H4 (Location?)"
