"""Photo-like JPEGs for the benchmarks (stdlib + numpy + Pillow only).

Flat synthetic images decode far faster than photos, which would flatter every decode-bound figure; smooth
gradients plus sensor-like noise give realistic JPEG sizes and decode costs. tests/conftest.py keeps its own
copy so the test suite never imports benchmark code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def photo_like(path: Path, size: tuple[int, int], seed: int, quality: int = 90) -> Path:
    """Write one photo-like RGB JPEG of ``size`` (w, h); ``seed`` varies both the pattern and the noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / (w / (2 + seed % 3)) + seed),
            128 + 100 * np.cos(yy / (h / (1 + seed % 4))),
            128 + 60 * np.sin((xx + yy) / (w / 3)),
        ],
        axis=-1,
    )
    base += rng.normal(0, 12, size=base.shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=quality)
    return path


def make_jpegs(folder: Path, n: int, size: tuple[int, int], start: int = 0, quality: int = 88) -> list[Path]:
    """``n`` distinct photo-like JPEGs named img{start:04d}.jpg ... in ``folder``."""
    return [photo_like(folder / f"img{i:04d}.jpg", size, seed=i, quality=quality) for i in range(start, start + n)]
