"""Render the real main window to docs/screenshots/main_light.png and main_dark.png.

Run under a virtual X server (the real xcb platform, real fonts):

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshots.py

Uses the tiny demo model (no weights are needed, and the window says its results are meaningless), the bundled
default vocabulary and a few generated images. Settings and caches go to a temp folder so the user's own are
untouched (set SPLICE_DESKTOP_CACHE to reuse a concept cache between runs).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"


def make_images(folder: Path, n: int = 6) -> list[Path]:
    """Photo-like scenes (sky gradient, ground, sun, a few blobs) so thumbnails and the large view look plausible."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    palettes = [((90, 150, 230), (60, 140, 60)), ((250, 170, 90), (120, 90, 60)), ((40, 60, 110), (30, 30, 40)),
                ((170, 210, 240), (220, 220, 210)), ((120, 190, 220), (200, 170, 110)), ((200, 120, 160), (70, 110, 70))]
    for i in range(n):
        w, h = 640, 480
        sky, ground = palettes[i % len(palettes)]
        yy = np.linspace(0, 1, h)[:, None, None]
        top = np.array(sky, dtype=np.float32) * (1.1 - 0.4 * yy)
        img = np.broadcast_to(top, (h, w, 3)).copy()
        horizon = int(h * (0.55 + 0.1 * rng.random()))
        img[horizon:] = np.array(ground, dtype=np.float32) * (0.8 + 0.3 * rng.random((h - horizon, w, 1)))
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
        d = ImageDraw.Draw(pil)
        cx, cy = int(rng.integers(80, w - 80)), int(rng.integers(40, horizon - 40))
        d.ellipse([cx - 30, cy - 30, cx + 30, cy + 30], fill=(255, 236, 150))
        for _ in range(5):
            x, y = int(rng.integers(0, w)), int(rng.integers(horizon - 60, h))
            r = int(rng.integers(15, 60))
            colour = tuple(int(c) for c in rng.integers(20, 220, size=3))
            d.rectangle([x - r, y - r, x + r, y + r // 2], fill=colour)
        pil = pil.filter(ImageFilter.GaussianBlur(1.2))
        path = folder / f"scene_{i + 1}.jpg"
        pil.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def wait_until(app, cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def settle(app, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="splice-shots-"))
    os.environ.setdefault("SPLICE_DESKTOP_CACHE", str(tmp / "cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    from splice_desktop.gui.app import app_icon
    from splice_desktop.gui.main_window import MainWindow
    from splice_desktop.gui.settings import AppSettings, PipelineConfig, isolate_settings
    from splice_desktop.gui.theme import ThemeManager

    isolate_settings(tmp / "settings")
    app.setWindowIcon(app_icon())
    theme = ThemeManager()
    theme.apply("light")
    config = PipelineConfig(model_name="splice-tiny-random", pretrained=None, checkpoint=None, device="cpu")
    win = MainWindow(settings=AppSettings(), theme=theme, config=config)
    win.resize(1280, 800)
    win.move(0, 0)
    win.show()

    ready = []
    win.pipelineReady.connect(ready.append)
    win.pipelineFailed.connect(lambda exc: print(f"loading failed: {exc}", file=sys.stderr))
    wait_until(app, lambda: bool(ready), 600, "the model and concept bank")
    images = make_images(tmp / "images")
    win.add_paths([tmp / "images"])
    first = str(images[0].resolve())
    view = win.analysis
    wait_until(app, lambda: view.current_decomposition() is not None and view.current_key() == first, 300,
               "the first decomposition")
    # A lambda that shows a readable number of bars, then remove one concept so the zero-shot shifts show.
    dec = view.current_decomposition()
    view.set_lambda(0.35 * dec.lambda_max)
    wait_until(app, lambda: view.current_decomposition() is not None
               and abs(view.current_decomposition().lam - 0.35 * dec.lambda_max) < 1e-9, 60, "the new lambda")
    dec = view.current_decomposition()
    if dec.l0 >= 3:
        view.editor.select_concept(dec.words[1])
        view.editor.remove_selected()
        wait_until(app, lambda: view.current_decomposition() is not None
                   and bool(view.current_decomposition().edits.removed), 60, "the edited decomposition")
    wait_until(app, lambda: view.zeroshot_panel.comparison() is not None, 120, "the zero-shot comparison")
    wait_until(app, lambda: win.image_view.image() is not None, 60, "the large image")
    wait_until(app, lambda: win.encoder is None, 120, "encoding to finish")
    wait_until(app, lambda: win.image_model.cached_thumbnails() >= len(images), 60, "thumbnails")
    settle(app, 0.8)

    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("light", "dark"):
        win.set_theme(name)
        settle(app, 0.8)
        path = OUT / f"main_{name}.png"
        if not win.grab().save(str(path)):
            raise RuntimeError(f"could not write {path}")
        print(f"wrote {path}")
    win.set_theme("light")
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
