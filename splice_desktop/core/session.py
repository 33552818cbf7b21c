"""Saving and restoring a working session (images, model, vocabulary, image mean, lambda, edits) as JSON.

Loading validates everything and turns any malformed file into a ``SessionError`` that says what is wrong,
because a session file may come from another machine or an older version. Images that have since gone
missing are reported (``missing_images``), not fatal: the rest of the session is still useful.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from splice_desktop.core.cache import atomic_write_text
from splice_desktop.core.decompose import EDIT_MODES, EditState
from splice_desktop.core.errors import SpliceError
from splice_desktop.core.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelSpec

SESSION_FORMAT = "splice-desktop-session"
SESSION_VERSION = 1
VOCAB_ORDERS = ("ascending", "plain")


class SessionError(SpliceError):
    """A session file cannot be read (missing, not JSON, wrong format or version, invalid fields)."""


@dataclass
class SessionState:
    """Everything needed to put the app back where the user left it. Paths are stored as strings."""

    images: list[str] = field(default_factory=list)
    model_name: str = DEFAULT_MODEL
    model_pretrained: Optional[str] = DEFAULT_PRETRAINED
    model_checkpoint: Optional[str] = None
    vocabulary_path: Optional[str] = None  # None = the built-in default vocabulary
    vocabulary_size: Optional[int] = None  # None = the whole file
    vocabulary_order: str = "ascending"
    image_mean_path: Optional[str] = None  # None = no image mean
    lam: float = 0.25
    edits: dict[str, EditState] = field(default_factory=dict)  # image path -> its edits
    zeroshot_source: Optional[str] = None  # "imagenet", a class-file path, or None
    current_image: Optional[str] = None
    format_version: int = SESSION_VERSION

    # ------------------------------------------------------------------ model spec

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(name=self.model_name, pretrained=self.model_pretrained, checkpoint=self.model_checkpoint)

    def set_model_spec(self, spec: ModelSpec) -> None:
        self.model_name, self.model_pretrained, self.model_checkpoint = spec.name, spec.pretrained, spec.checkpoint

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SESSION_FORMAT,
            "format_version": SESSION_VERSION,
            "images": [str(p) for p in self.images],
            "current_image": self.current_image,
            "model": {"name": self.model_name, "pretrained": self.model_pretrained,
                      "checkpoint": self.model_checkpoint},
            "vocabulary": {"path": self.vocabulary_path, "size": self.vocabulary_size,
                           "order": self.vocabulary_order},
            "image_mean_path": self.image_mean_path,
            "lambda": float(self.lam),
            "edits": {img: e.to_dict() for img, e in self.edits.items() if not e.is_empty},
            "zeroshot_source": self.zeroshot_source,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically as UTF-8 JSON (a crash never leaves a half-written session)."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        return atomic_write_text(path, text)

    @classmethod
    def from_dict(cls, data: Any, source: str = "session") -> "SessionState":
        """Validate and build; every problem becomes a SessionError naming the field."""

        def fail(msg: str) -> SessionError:
            return SessionError(f"Cannot open {source}: {msg}")

        if not isinstance(data, dict):
            raise fail("the file does not contain a session object (expected a JSON object).")
        if data.get("format") != SESSION_FORMAT:
            raise fail(f"this is not a SpLiCE Desktop session file (format is {data.get('format')!r}).")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise fail("format_version is missing or not an integer.")
        if version > SESSION_VERSION:
            raise fail(
                f"it was written by a newer SpLiCE Desktop (session version {version}, this version reads up to "
                f"{SESSION_VERSION}). Update the app to open it."
            )
        if version < 1:
            raise fail(f"unknown session version {version}.")

        def opt_str(value: Any, name: str) -> Optional[str]:
            if value is None or isinstance(value, str):
                return value
            raise fail(f"{name} must be a string or null (got {type(value).__name__}).")

        def section(name: str) -> dict[str, Any]:
            value = data.get(name, {})
            if not isinstance(value, dict):
                raise fail(f"{name} must be an object.")
            return value

        images = data.get("images", [])
        if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
            raise fail("images must be a list of file paths.")
        model = section("model")
        name = model.get("name", DEFAULT_MODEL)
        if not isinstance(name, str) or not name:
            raise fail("model.name must be a non-empty string.")
        vocab = section("vocabulary")
        size = vocab.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise fail(f"vocabulary.size must be a positive integer or null (got {size!r}).")
        order = vocab.get("order", "ascending")
        if order not in VOCAB_ORDERS:
            raise fail(f"vocabulary.order must be one of {', '.join(VOCAB_ORDERS)} (got {order!r}).")
        lam = data.get("lambda", 0.25)
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise fail(f"lambda must be a finite number >= 0 (got {lam!r}).")
        raw_edits = data.get("edits", {})
        if not isinstance(raw_edits, dict):
            raise fail("edits must be an object mapping image paths to edits.")
        edits: dict[str, EditState] = {}
        for img, e in raw_edits.items():
            if not isinstance(e, dict):
                raise fail(f"edits for {img} must be an object.")
            removed, scales = e.get("removed", []), e.get("scales", {})
            if not isinstance(removed, list) or not all(isinstance(w, str) for w in removed):
                raise fail(f"edits for {img}: removed must be a list of concept names.")
            if not isinstance(scales, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scales.values()
            ):
                raise fail(f"edits for {img}: scales must map concept names to numbers.")
            if e.get("mode", "zero") not in EDIT_MODES:
                raise fail(f"edits for {img}: mode must be one of {', '.join(EDIT_MODES)}.")
            try:
                edits[img] = EditState.from_dict(e)
            except SpliceError as exc:
                raise fail(f"edits for {img}: {exc}") from exc

        return cls(
            images=list(images),
            model_name=name,
            model_pretrained=opt_str(model.get("pretrained"), "model.pretrained"),
            model_checkpoint=opt_str(model.get("checkpoint"), "model.checkpoint"),
            vocabulary_path=opt_str(vocab.get("path"), "vocabulary.path"),
            vocabulary_size=size,
            vocabulary_order=order,
            image_mean_path=opt_str(data.get("image_mean_path"), "image_mean_path"),
            lam=float(lam),
            edits=edits,
            zeroshot_source=opt_str(data.get("zeroshot_source"), "zeroshot_source"),
            current_image=opt_str(data.get("current_image"), "current_image"),
            format_version=SESSION_VERSION,
        )

    @classmethod
    def load(cls, path: str | Path) -> "SessionState":
        """Read and validate; raises SessionError with the reason. Check ``missing_images()`` afterwards."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise SessionError(f"Session file not found: {p}.") from exc
        except UnicodeDecodeError as exc:
            raise SessionError(f"Cannot open {p}: it is not a UTF-8 text file.") from exc
        except OSError as exc:
            raise SessionError(f"Cannot read session file {p}: {exc.strerror or exc}.") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SessionError(f"Cannot open {p}: not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
        return cls.from_dict(data, source=str(p))

    # ------------------------------------------------------------------ checks

    def missing_images(self) -> list[str]:
        """Image paths that no longer exist (reported to the user; the rest of the session still loads)."""
        return [p for p in self.images if not Path(p).is_file()]

    def existing_images(self) -> list[str]:
        return [p for p in self.images if Path(p).is_file()]
