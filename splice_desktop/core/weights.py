"""Find pretrained open_clip weights on disk before anything touches the network.

Why: offline, open_clip's hub download retries for about a minute (measured 46-58 s here) before it fails, and
the user sees a frozen progress bar. Looking in the caches first makes a cached model load without any network
request, and a missing one fail in well under a second with a message that says exactly where we looked.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Optional

HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HUB_HOST = "huggingface.co"


def pretrained_cfg(architecture: str, tag: str) -> dict[str, Any]:
    """open_clip's registry entry for (architecture, tag); also tries the name without ``-quickgelu``."""
    import open_clip

    for name in (architecture, architecture.replace("-quickgelu", "")):
        cfg = open_clip.get_pretrained_cfg(name, tag)
        if cfg:
            return dict(cfg)
    return {}


def _hf_candidates(hf_hub: str) -> tuple[str, tuple[str, ...]]:
    """Split open_clip's ``org/repo/filename`` (or ``org/repo/``) into repo id and the files it may fetch."""
    repo_id, filename = os.path.split(hf_hub)
    if not filename:
        return repo_id, HF_WEIGHT_FILES
    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return repo_id, tuple(names)


def is_hub_file(cfg: dict[str, Any], path: Path) -> bool:
    """Whether ``path`` is one of the files open_clip would fetch from the hub for this tag (so the model can be
    loaded from it by path); False for other sources such as OpenAI's URL downloads."""
    hf_hub = cfg.get("hf_hub", "")
    return bool(hf_hub) and path.name in _hf_candidates(hf_hub)[1]


def find_cached_weights(architecture: str, tag: str, cache_dir: Optional[str] = None) -> Optional[Path]:
    """Path of already-downloaded weights for an open_clip tag, or None (never downloads)."""
    cfg = pretrained_cfg(architecture, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        path = Path(cfg["file"]).expanduser()
        return path if path.is_file() else None
    hf_hub = cfg.get("hf_hub", "")
    if hf_hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo_id, names = _hf_candidates(hf_hub)
            for name in names:
                hit = try_to_load_from_cache(repo_id=repo_id, filename=name, cache_dir=cache_dir)
                if isinstance(hit, (str, os.PathLike)) and Path(hit).is_file():
                    return Path(hit)
    url = cfg.get("url", "")
    if url:
        folder = Path(cache_dir).expanduser() if cache_dir else Path("~/.cache/clip").expanduser()
        path = folder / os.path.basename(url)
        if path.is_file():
            return path
    return None


def describe_cache_locations(cache_dir: Optional[str] = None) -> str:
    """Where find_cached_weights looked, for error messages."""
    if cache_dir:
        return str(Path(cache_dir).expanduser())
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        hub = str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        hub = "~/.cache/huggingface/hub"
    return f"{hub} and {Path('~/.cache/clip').expanduser()}"


def hub_reachable(timeout: float = 1.5) -> bool:
    """True when downloads may work: not forced offline and the hub's host answers a TCP connect quickly."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def preprocess_overrides(cfg: dict[str, Any]) -> dict[str, Any]:
    """Image normalisation settings of a pretrained tag, to pass on when loading its file by path.

    Loading by file path skips open_clip's tag registry, which is where a few tags keep non-default mean/std.
    """
    keys = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
            "resize_mode": "image_resize_mode"}
    return {arg: cfg[key] for key, arg in keys.items() if cfg.get(key) is not None}
