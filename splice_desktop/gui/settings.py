"""Typed access to the app's QSettings (organisation "SpLiCE Desktop").

Every persisted preference goes through ``AppSettings`` so keys and defaults live in one place, and tests can
point the whole store at a temp folder with ``isolate_settings(path)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Optional

from PySide6.QtCore import QCoreApplication, QSettings

ORGANIZATION = "SpLiCE Desktop"
APPLICATION = "SpLiCE Desktop"
MAX_RECENT = 10

# Kept in sync with core.models (not imported here: core.models is cheap, but this keeps settings Qt+stdlib only).
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
TINY_MODEL = "splice-tiny-random"


def configure_identity() -> None:
    """Must run before the first QSettings() so the store is found under the right organisation/application."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)


def isolate_settings(folder: str | Path) -> None:
    """Point every default-constructed QSettings at INI files under ``folder`` (tests, screenshots, benchmarks)."""
    configure_identity()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder))


class PipelineConfig(NamedTuple):
    """What the background loader needs: model, device, vocabulary, image mean, zero-shot options.

    Immutable; comparing two configs tells the loader what to rebuild after Preferences > Apply. (A NamedTuple
    rather than a dataclass: it costs nothing to import, and this module is on the path to the first paint.)
    """

    model_name: str = DEFAULT_MODEL
    pretrained: Optional[str] = DEFAULT_PRETRAINED
    checkpoint: Optional[str] = None
    device: str = "auto"
    vocab_path: Optional[str] = None  # None = the bundled default vocabulary
    vocab_size: Optional[int] = None  # None = all words
    vocab_order: str = "ascending"
    mean_path: Optional[str] = None
    mean_from_images: bool = False
    ensemble: bool = False

    def model_key(self) -> tuple:
        return (self.model_name, self.pretrained, self.checkpoint, self.device)

    def vocab_key(self) -> tuple:
        return (self.vocab_path, self.vocab_size, self.vocab_order)

    def mean_key(self) -> tuple:
        return (self.mean_path, self.mean_from_images)

    def with_changes(self, **changes: Any) -> "PipelineConfig":
        return self._replace(**changes)

    def with_tiny_model(self) -> "PipelineConfig":
        """The same settings with the random demo model (no weights to find, no checkpoint)."""
        return self._replace(model_name=TINY_MODEL, pretrained=None, checkpoint=None)


def _opt_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class AppSettings:
    """A thin typed wrapper; reads and writes go straight to QSettings (no caching, so two windows agree)."""

    def __init__(self, store: Optional[QSettings] = None) -> None:
        self.store = store if store is not None else QSettings()

    # ---- pipeline -------------------------------------------------------------------------------------------
    def pipeline(self) -> PipelineConfig:
        s = self.store
        size_raw = s.value("vocab/size", 0)
        try:
            size = int(size_raw) if size_raw not in (None, "") else 0
        except (TypeError, ValueError):
            size = 0
        pretrained = s.value("model/pretrained", DEFAULT_PRETRAINED)
        return PipelineConfig(
            model_name=_opt_str(s.value("model/name", DEFAULT_MODEL)) or DEFAULT_MODEL,
            pretrained=_opt_str(pretrained),
            checkpoint=_opt_str(s.value("model/checkpoint", "")),
            device=_opt_str(s.value("model/device", "auto")) or "auto",
            vocab_path=_opt_str(s.value("vocab/path", "")),
            vocab_size=size if size > 0 else None,
            vocab_order=_opt_str(s.value("vocab/order", "ascending")) or "ascending",
            mean_path=_opt_str(s.value("mean/path", "")),
            mean_from_images=_bool(s.value("mean/from_images", False)),
            ensemble=_bool(s.value("zeroshot/ensemble", False)),
        )

    def set_pipeline(self, cfg: PipelineConfig) -> None:
        s = self.store
        s.setValue("model/name", cfg.model_name)
        s.setValue("model/pretrained", cfg.pretrained or "")
        s.setValue("model/checkpoint", cfg.checkpoint or "")
        s.setValue("model/device", cfg.device)
        s.setValue("vocab/path", cfg.vocab_path or "")
        s.setValue("vocab/size", int(cfg.vocab_size or 0))
        s.setValue("vocab/order", cfg.vocab_order)
        s.setValue("mean/path", cfg.mean_path or "")
        s.setValue("mean/from_images", bool(cfg.mean_from_images))
        s.setValue("zeroshot/ensemble", bool(cfg.ensemble))
        s.sync()

    # ---- view -----------------------------------------------------------------------------------------------
    def theme(self) -> str:
        value = _opt_str(self.store.value("view/theme", "light")) or "light"
        return value if value in ("light", "dark") else "light"

    def set_theme(self, name: str) -> None:
        self.store.setValue("view/theme", name)

    def lambda_value(self) -> Optional[float]:
        value = self.store.value("analysis/lambda", None)
        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    def set_lambda_value(self, value: Optional[float]) -> None:
        self.store.setValue("analysis/lambda", "" if value is None else float(value))

    def geometry(self) -> Any:
        return self.store.value("window/geometry")

    def window_state(self) -> Any:
        return self.store.value("window/state")

    def save_window(self, geometry: Any, state: Any) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)
        self.store.sync()

    # ---- recent files ---------------------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.store.value("recent/files", [])
        if value is None:
            return []
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in value if str(v)][:MAX_RECENT]

    def add_recent_file(self, path: str | Path) -> list[str]:
        """Move ``path`` to the front, keep at most MAX_RECENT, drop entries that no longer exist."""
        text = str(Path(path).resolve())
        items = [text] + [p for p in self.recent_files() if p != text and Path(p).exists()]
        items = items[:MAX_RECENT]
        self.store.setValue("recent/files", items)
        self.store.sync()
        return items

    def clear_recent_files(self) -> None:
        self.store.setValue("recent/files", [])

    def last_directory(self) -> str:
        return _opt_str(self.store.value("paths/last_dir", "")) or str(Path.home())

    def set_last_directory(self, path: str | Path) -> None:
        self.store.setValue("paths/last_dir", str(path))
