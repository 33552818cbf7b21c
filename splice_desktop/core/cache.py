"""Where caches live and how files are written without ever leaving a half-written file behind."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

CACHE_ENV = "SPLICE_DESKTOP_CACHE"


def cache_root() -> Path:
    """The cache folder: $SPLICE_DESKTOP_CACHE, else $XDG_CACHE_HOME/splice-desktop, else ~/.cache/splice-desktop."""
    override = os.environ.get(CACHE_ENV)
    if override:
        root = Path(override)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "splice-desktop"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(kind: str) -> Path:
    """A sub-folder of the cache root for one kind of artefact ("concepts", "images", "pool", ...)."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name-safe form of any identifier (the SpLiCE reference broke on ':' and '/' in model names)."""
    return _UNSAFE.sub("_", text).strip("_") or "unnamed"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle, chunk)


def sha256_stream(handle: BinaryIO, chunk: int = 1 << 20) -> str:
    """sha256 of the rest of an open binary file, read in ``chunk``-byte blocks (bounded memory)."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(chunk), b""):
        digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Write via ``writer(tmp_path)`` to a temp file in the same folder, fsync, then rename over ``path``.

    A crash or cancel at any point leaves either the old file or the new one, never a partial file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save an .npy atomically; load it later with ``np.load(path, mmap_mode="r")`` for an instant open."""

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    return atomic_write(path, _write)


def load_npy_mmap(path: str | Path, shape: tuple[int, ...], dtype: "np.dtype | type" = np.float32) -> "np.ndarray | None":
    """Memory-map a cached .npy; None (so the caller rebuilds it) if missing, unreadable or not the expected shape.

    Caches are disposable: a truncated, foreign or stale file must mean "rebuild", never a crash.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if data.dtype != np.dtype(dtype) or tuple(data.shape) != tuple(shape):
        return None
    return data
