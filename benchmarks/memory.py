"""Resident memory of the real main window after 100 vs after 1000 encoded images.

The window loads the tiny model, then 100 photo-like JPEGs are dropped in and encoded; the list is scrolled end to
end so every thumbnail is requested (the cache keeps at most THUMB_CACHE pixmaps); RSS is read. Then 900 more are
added, encoded and scrolled through, and RSS is read again. Target (issue 6): RSS(1000) - RSS(100) < 100 MB.

    .venv/bin/python benchmarks/memory.py [--size 640x480]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _images import make_jpegs  # noqa: E402
from _timing import fresh_app_environment, pump_events  # noqa: E402


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def settle_rss(app) -> float:
    """RSS after the event loop is idle and garbage collected (malloc_trim returns freed heap pages on glibc)."""
    pump_events(app, 1.0)
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return rss_mb()


def scroll_through(app, win) -> None:
    view = win.list_view
    bar = view.horizontalScrollBar() if getattr(view, "is_strip", False) else view.verticalScrollBar()
    steps = max(1, bar.maximum() // max(1, bar.pageStep()) + 1)
    for k in range(steps + 1):
        bar.setValue(min(bar.maximum(), k * bar.pageStep()))
        pump_events(app, 10, lambda: win.thumbnailer is None or win.thumbnailer.pending_count() == 0)
        pump_events(app, 0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))

    tmp = fresh_app_environment("splice-mem-")
    print("generating 1000 JPEGs…", flush=True)
    make_jpegs(tmp / "first", 100, size, start=0, quality=85)
    make_jpegs(tmp / "rest", 900, size, start=100, quality=85)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    from splice_desktop.gui.main_window import MainWindow
    from splice_desktop.gui.settings import PipelineConfig, isolate_settings
    from splice_desktop.gui.widgets.image_list import THUMB_CACHE

    isolate_settings(tmp / "settings")
    cfg = PipelineConfig(model_name="splice-tiny-random", pretrained=None, checkpoint=None, device="cpu")
    win = MainWindow(config=cfg)
    win.resize(1280, 800)
    win.show()
    ready: list = []
    win.pipelineReady.connect(ready.append)
    if not pump_events(app, 900, lambda: bool(ready)):
        print("the pipeline did not load", file=sys.stderr)
        return 1

    def encoded(n: int) -> bool:
        return len(win.embeddings) >= n and win.encoder is None

    rss0 = settle_rss(app)
    win.add_paths([tmp / "first"])
    pump_events(app, 600, lambda: encoded(100))
    scroll_through(app, win)
    rss100 = settle_rss(app)
    t0 = time.perf_counter()
    win.add_paths([tmp / "rest"])
    pump_events(app, 1800, lambda: encoded(1000))
    t_enc = time.perf_counter() - t0
    scroll_through(app, win)
    rss1000 = settle_rss(app)
    print(f"encoded {len(win.embeddings)} images ({900 / t_enc:.0f} img/s for the last 900), "
          f"{len(win.failures)} failures; thumbnails cached {win.image_model.cached_thumbnails()} "
          f"(cap {THUMB_CACHE}); embeddings array {win.embeddings.nbytes() / 2**20:.1f} MB")
    print(f"RSS with the model loaded, no images : {rss0:8.1f} MB")
    print(f"RSS after 100 images                  : {rss100:8.1f} MB")
    print(f"RSS after 1000 images                 : {rss1000:8.1f} MB")
    print(f"RSS(1000) - RSS(100)                  : {rss1000 - rss100:8.1f} MB (target < 100 MB)")
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
