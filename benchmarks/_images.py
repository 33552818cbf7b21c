"""Photo-like JPEGs for the benchmarks: the test suite's generator (tests/photos.py), at benchmark sizes.

Flat synthetic images decode far faster than photos, which would flatter every decode-bound figure; smooth
gradients plus sensor-like noise give realistic JPEG sizes and decode costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.photos
from tests.photos import make_photo_like  # noqa: E402


def photo_like(path: Path, size: tuple[int, int], seed: int, quality: int = 90) -> Path:
    """Write one photo-like RGB JPEG of ``size`` (w, h); ``seed`` varies both the pattern and the noise."""
    return make_photo_like(path, size=size, seed=seed, quality=quality)


def make_jpegs(folder: Path, n: int, size: tuple[int, int], start: int = 0, quality: int = 88) -> list[Path]:
    """``n`` distinct photo-like JPEGs named img{start:04d}.jpg ... in ``folder``."""
    return [photo_like(folder / f"img{i:04d}.jpg", size, seed=i, quality=quality) for i in range(start, start + n)]
