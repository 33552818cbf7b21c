"""Session files: round trip, atomic save, validation errors with clear messages, missing images not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splice_desktop.core.decompose import EditState
from splice_desktop.core.errors import SpliceError
from splice_desktop.core.models import ModelSpec
from splice_desktop.core.session import SESSION_VERSION, SessionError, SessionState


def _state(tmp_path: Path, photo_factory) -> SessionState:
    a = photo_factory("a.jpg", seed=1)
    b = photo_factory("b.jpg", seed=2)
    return SessionState(
        images=[str(a), str(b)],
        model_name="ViT-B-16",
        model_pretrained="openai",
        vocabulary_path=str(tmp_path / "vocab.txt"),
        vocabulary_size=5000,
        vocabulary_order="plain",
        image_mean_path=str(tmp_path / "mean.npy"),
        lam=0.3,
        edits={str(a): EditState(removed=frozenset({"dog", "ice cream"}), scales={"cat": 0.5}, mode="resolve")},
        zeroshot_source="imagenet",
        current_image=str(b),
    )


def test_round_trip(tmp_path: Path, photo_factory) -> None:
    state = _state(tmp_path, photo_factory)
    path = state.save(tmp_path / "s" / "session.json")
    assert not list(path.parent.glob(".*.tmp"))
    loaded = SessionState.load(path)
    assert loaded == state
    assert loaded.model_spec == ModelSpec("ViT-B-16", "openai", None)
    assert loaded.model_spec.architecture == "ViT-B-16-quickgelu"
    assert loaded.missing_images() == []
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format_version"] == SESSION_VERSION
    assert data["edits"][state.images[0]]["removed"] == ["dog", "ice cream"]


def test_defaults_round_trip_and_empty_edits_dropped(tmp_path: Path) -> None:
    state = SessionState(edits={"x.jpg": EditState()})
    state.set_model_spec(ModelSpec.tiny())
    loaded = SessionState.load(state.save(tmp_path / "s.json"))
    assert loaded.model_spec.is_tiny and loaded.vocabulary_path is None and loaded.edits == {}


def test_missing_images_are_reported_not_fatal(tmp_path: Path, photo_factory) -> None:
    state = _state(tmp_path, photo_factory)
    path = state.save(tmp_path / "session.json")
    Path(state.images[0]).unlink()
    loaded = SessionState.load(path)
    assert loaded.missing_images() == [state.images[0]]
    assert loaded.existing_images() == [state.images[1]]
    assert loaded.edits == state.edits  # edits of the missing image are kept in case it comes back


def _write(tmp_path: Path, content) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return p


def _valid(tmp_path: Path) -> dict:
    return SessionState(images=["x.jpg"]).to_dict()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format_version=SESSION_VERSION + 1), "newer"),
        (lambda d: d.update(format_version="1"), "format_version"),
        (lambda d: d.pop("format"), "not a SpLiCE Desktop session"),
        (lambda d: d.update(images="x.jpg"), "images"),
        (lambda d: d.update({"lambda": -1}), "lambda"),
        (lambda d: d.update({"lambda": "big"}), "lambda"),
        (lambda d: d["vocabulary"].update(size=0), "vocabulary.size"),
        (lambda d: d["vocabulary"].update(order="random"), "vocabulary.order"),
        (lambda d: d["model"].update(name=""), "model.name"),
        (lambda d: d["model"].update(pretrained=3), "model.pretrained"),
        (lambda d: d.update(edits={"x.jpg": {"removed": "dog"}}), "removed"),
        (lambda d: d.update(edits={"x.jpg": {"scales": {"dog": -2}}}), "(?i)scale"),
        (lambda d: d.update(edits={"x.jpg": {"mode": "explode"}}), "mode"),
    ],
)
def test_malformed_fields_raise_session_error(tmp_path: Path, mutate, message) -> None:
    data = _valid(tmp_path)
    mutate(data)
    with pytest.raises(SessionError, match=message) as info:
        SessionState.load(_write(tmp_path, data))
    assert isinstance(info.value, SpliceError)
    assert "bad.json" in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "session object"), ("", "not valid JSON")],
)
def test_unreadable_files(tmp_path: Path, content, message) -> None:
    with pytest.raises(SessionError, match=message):
        SessionState.load(_write(tmp_path, content))


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="not found"):
        SessionState.load(tmp_path / "nope.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SessionError, match="UTF-8"):
        SessionState.load(binary)
