"""Photo-like test images (numpy + Pillow only, no side effects on import).

Flat synthetic images decode far faster than photos; smooth gradients plus sensor-like noise give realistic JPEG
sizes and decode costs. Kept apart from conftest.py (which configures Qt and caches when imported) so the
benchmarks can use the same generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def make_photo_like(path: Path, size: tuple[int, int] = (96, 72), seed: int = 0, fmt: str = "JPEG",
                    quality: Optional[int] = None) -> Path:
    """Write a smooth, photo-like RGB image (gradients plus noise) so JPEG sizes and decode costs are realistic.

    ``seed`` varies both the pattern and the noise; ``quality``: JPEG quality (Pillow's default when None).
    Used by the tests and by benchmarks/_images.py, so both decode the same kind of image."""
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
    noise = rng.normal(0, 12, size=base.shape)
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path, fmt, **({} if quality is None else {"quality": quality}))
    return path
