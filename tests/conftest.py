"""Shared fixtures. Qt runs offscreen, caches live in a temp folder, and the tiny model is built once per run."""

from __future__ import annotations

import os
from pathlib import Path

# Must happen before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; loading code is tested offline

import pytest

from tests.photos import make_photo_like  # noqa: F401 - also imported from here by tests

REF_DIR = Path(__file__).resolve().parents[2] / "shared" / "ref"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point every on-disk cache at a per-run temp folder so tests never touch the user's cache."""
    root = tmp_path_factory.mktemp("splice-cache")
    os.environ["SPLICE_DESKTOP_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny random open_clip model (deterministic seed); built once, shared read-only by all tests."""
    from splice_desktop.core.models import ModelSpec, load_model

    return load_model(ModelSpec.tiny(), device="cpu")


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    """../shared/ref when present; tests that need it skip cleanly otherwise."""
    if not REF_DIR.is_dir():
        pytest.skip("../shared/ref is not present beside the checkout")
    return REF_DIR


@pytest.fixture
def photo_factory(tmp_path: Path):
    """Call ``photo_factory(name, size=..., seed=...)`` to get a fresh photo-like image file in tmp_path."""

    def _make(name: str, size: tuple[int, int] = (96, 72), seed: int = 0, fmt: str = "JPEG") -> Path:
        return make_photo_like(tmp_path / name, size=size, seed=seed, fmt=fmt)

    return _make
