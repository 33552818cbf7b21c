"""Screenshots of each CLIP-InterpreT analysis in the real InterpretPanel (tiny demo model, generated pool).

    xvfb-run -a -s "-screen 0 1280x900x24" .venv/bin/python docs/screenshots_interpret.py
Writes docs/screenshots/interpret_<analysis>.png. The tiny model is random: the panel says results are meaningless.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))
OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="interpret-shots-"))
    os.environ["SPLICE_DESKTOP_CACHE"] = str(tmp / "cache")
    from PySide6.QtWidgets import QApplication

    from screenshots import make_images  # docs/screenshots.py (photo-like scenes)
    from splice_desktop.gui.settings import isolate_settings

    app = QApplication.instance() or QApplication(sys.argv)
    isolate_settings(tmp / "settings")  # never the user's own settings (both scopes, the app's identity)
    from splice_desktop.core.models import ModelSpec, load_model
    from splice_desktop.gui.widgets.interpret_panel import InterpretPanel

    pool_dir = tmp / "pool"
    images = make_images(pool_dir, 12)
    loaded = load_model(ModelSpec.tiny(), "cpu")
    panel = InterpretPanel()
    panel.resize(1150, 900)
    panel.show()
    panel.set_model(loaded)
    panel.set_pool_folders([pool_dir])

    def wait(cond, timeout=120):
        end = time.time() + timeout
        while not cond():
            app.processEvents()
            time.sleep(0.02)
            if time.time() > end:
                raise TimeoutError
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)

    panel.build_index()
    wait(lambda: not panel.is_busy())
    panel.set_image(images[0])
    wait(lambda: panel.session is not None and panel.session.decomposition is not None and not panel.is_busy())
    OUT.mkdir(parents=True, exist_ok=True)

    def shot(tab_index: int, name: str, run) -> None:
        panel.tabs.setCurrentIndex(tab_index)
        run()
        wait(lambda: not panel.is_busy() and name in panel._results)
        panel.grab().save(str(OUT / f"interpret_{name}.png"))
        print("wrote", OUT / f"interpret_{name}.png")

    panel.set_custom_heads([(1, 0), (1, 3)])
    shot(0, "property", panel.run_property_nn)
    panel.topic_text.setText("a photo taken at sunset")
    panel.topic_scope.setCurrentIndex(2)
    shot(1, "topic", panel.run_topic)
    panel.contrast_text1.setText("the sky")
    panel.contrast_text2.setText("the ground")
    shot(2, "contrastive", panel.run_contrastive)
    shot(3, "image_nn", panel.run_image_nn)
    panel.textnn_text.setText("a photo of a beach")
    shot(4, "text_nn", panel.run_text_nn)
    panel.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
