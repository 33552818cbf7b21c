"""The main window shell: fast start without torch, status bar, missing weights, settings, themes, dialogs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, QSize, Qt, QUrl
from PySide6.QtGui import QColor, QDropEvent, QImage, QPalette
from PySide6.QtWidgets import QApplication

from splice_desktop.gui.settings import AppSettings
from tests.gui.conftest import wait_ready


def test_window_shows_without_importing_torch_or_open_clip():
    """The window (with all panels built) must not pull in torch/open_clip; only the loader thread does."""
    code = (
        "import sys, os\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from splice_desktop.gui.settings import isolate_settings\n"
        "import tempfile; isolate_settings(tempfile.mkdtemp())\n"
        "from splice_desktop.gui.main_window import MainWindow\n"
        "w = MainWindow(autoload=False)\n"
        "w.show(); app.processEvents()\n"
        "print('heavy:' + ','.join(sorted(m for m in ('torch', 'open_clip', 'scipy', 'sklearn') if m in sys.modules)))\n"
        "print('panels', w.analysis is not None)\n"
        "w.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    heavy, panels = out.stdout.strip().splitlines()[-2:]
    assert heavy == "heavy:", f"heavy modules imported before the model loads: {heavy}"
    assert panels == "panels True", out.stderr


def test_status_bar_shows_device_model_vocab_and_mean(qtbot, make_window):
    win = make_window()
    assert "not loaded" in win.model_label.text()
    st = wait_ready(qtbot, win)
    assert st.meaningless
    assert win.device_label.text() == "device: cpu"
    assert win.model_label.text() == "meaningless demo model"
    assert "color" in win.model_label.styleSheet()  # shown in red
    assert win.vocab_label.text() == f"vocab: {len(st.vocabulary)}"
    assert len(st.vocabulary) == 300
    assert win.mean_label.text() == "image mean: absent"
    assert "meaningless" in win.windowTitle()
    assert win.loader_progress.isHidden()


def test_missing_weights_dialog_offers_the_tiny_model(qtbot, make_window, tiny_config):
    from splice_desktop.gui.dialogs.missing_weights import MissingWeightsDialog

    cfg = tiny_config.with_changes(model_name="ViT-B-32", pretrained=None, checkpoint="/nowhere/weights.safetensors")
    win = make_window(config=cfg)
    qtbot.waitUntil(lambda: isinstance(win.missing_weights_dialog, MissingWeightsDialog), timeout=60000)
    dlg = win.missing_weights_dialog
    assert "weights.safetensors" in dlg.details.toPlainText()
    assert dlg.isVisible()
    with qtbot.waitSignal(win.pipelineReady, timeout=120000):
        qtbot.mouseClick(dlg.tiny_button, Qt.MouseButton.LeftButton)
    assert win.state.meaningless
    assert AppSettings().pipeline().model_name == "splice-tiny-random"  # the choice is remembered


def test_missing_weights_cancel_keeps_app_usable(qtbot, make_window, tiny_config, photo_factory):
    cfg = tiny_config.with_changes(model_name="ViT-B-32", pretrained=None, checkpoint="/nowhere/w.pt")
    win = make_window(config=cfg)
    qtbot.waitUntil(lambda: win.missing_weights_dialog is not None, timeout=60000)
    qtbot.mouseClick(win.missing_weights_dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert win.state is None
    img = photo_factory("a.jpg")
    with qtbot.waitSignal(win.imagesAdded, timeout=10000):
        win.add_paths([img])
    assert win.image_model.rowCount() == 1
    assert win.image_model.paths("pending") == [str(img.resolve())]  # browsable, not encoded


def _drop(win, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    win.dropEvent(event)
    return event


def test_drop_folder_recursive_and_skipped_files_listed(qtbot, make_window, photo_factory, tmp_path):
    a = photo_factory("set/a.jpg", seed=1)
    b = photo_factory("set/sub/b.png", seed=2, fmt="PNG")
    bad = tmp_path / "set" / "sub" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    win = make_window(autoload=False)
    with qtbot.waitSignal(win.imagesAdded, timeout=10000):
        event = _drop(win, [tmp_path / "set"])
    assert event.isAccepted()
    listed = win.image_model.paths()
    assert str(a.resolve()) in listed and str(b.resolve()) in listed
    # The broken file is either rejected when listing or when encoding; either way it is listed with a reason.
    win.start_loading()
    qtbot.waitUntil(lambda: win.skipped_button.isVisible(), timeout=120000)
    assert win.skipped_button.text() == "1 file skipped"
    win.show_failures()
    dlg = win.failed_dialog
    assert dlg.table.rowCount() == 1
    assert "broken.jpg" in dlg.table.item(0, 0).text()
    assert dlg.table.item(0, 1).text()  # a reason is given
    qtbot.waitUntil(lambda: win.encoder is None and not win.image_model.paths("pending"), timeout=120000)
    assert len(win.embeddings) == 2


def test_paste_image_data_saves_png_and_adds_it(qtbot, make_window):
    from splice_desktop.core.cache import cache_dir

    win = make_window(autoload=False)
    img = QImage(QSize(40, 30), QImage.Format.Format_RGB32)
    img.fill(QColor("#3366cc"))
    mime = QMimeData()
    mime.setImageData(img)
    with qtbot.waitSignal(win.imagesAdded, timeout=10000) as blocker:
        assert win.paste_mime(mime)
    (key,) = blocker.args[0]
    assert Path(key).parent == cache_dir("pasted").resolve()
    back = QImage(key)
    assert back.size() == QSize(40, 30)
    assert back.pixelColor(5, 5) == QColor("#3366cc")


def test_settings_persist_across_windows(qtbot, make_window, tmp_path):
    win = make_window(autoload=False)
    win.set_theme("dark")
    win.resize(1200, 760)
    session_like = tmp_path / "s.json"
    session_like.write_text("{}")
    win.settings.add_recent_file(session_like)
    win.close()
    assert AppSettings().theme() == "dark"

    saved = AppSettings().geometry()
    assert saved  # geometry stored on close

    win2 = make_window(autoload=False)
    # The offscreen screen is only 800x600, so Qt clamps the restored width to the window's minimum;
    # the height (not clamped below the minimum) shows the geometry was restored.
    assert win2.height() == 760
    win2._fill_recent_menu()
    texts = [a.text() for a in win2.recent_menu.actions()]
    assert str(session_like.resolve()) in texts
    assert AppSettings().recent_files()[0] == str(session_like.resolve())


def test_theme_switch_applies_palette_and_renders(qtbot, make_window):
    win = make_window(autoload=False)
    win.set_theme("dark")
    pal = QApplication.instance().palette()
    assert pal.color(QPalette.ColorRole.Window).lightness() < 80
    assert win.theme_actions["dark"].isChecked()
    qtbot.wait(20)
    pix = win.image_view.grab().toImage()
    assert pix.pixelColor(3, 3).lightness() < 80  # the view really paints dark
    win.set_theme("light")
    qtbot.wait(20)  # palette changes reach widgets through the event loop
    assert QApplication.instance().palette().color(QPalette.ColorRole.Window).lightness() > 200
    pix = win.image_view.grab().toImage()
    assert pix.pixelColor(3, 3).lightness() > 200
    assert AppSettings().theme() == "light"


def test_preferences_apply_reloads_only_what_changed(qtbot, make_window):
    win = make_window()
    st = wait_ready(qtbot, win)
    win.open_preferences()
    dlg = win.preferences_dialog
    assert dlg.tiny.isChecked()
    dlg.vocab_size.setValue(120)
    with qtbot.waitSignal(win.pipelineReady, timeout=120000) as blocker:
        dlg.apply()
    st2 = blocker.args[0]
    assert st2.loaded is st.loaded  # the model was not reloaded
    assert len(st2.vocabulary) == 120
    assert win.vocab_label.text() == "vocab: 120"
    assert AppSettings().pipeline().vocab_size == 120
    dlg.reject()


def test_about_dialog_lists_versions_and_model(qtbot, make_window):
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    win = make_window()
    wait_ready(qtbot, win)
    win.show_about()
    text = win.about_dialog.text
    assert f"Qt: {qVersion()}" in text
    assert f"PySide6: {pyside_version}" in text
    assert "torch: " in text and "open_clip: " in text and "pyqtgraph: " in text
    assert "meaningless" in text
    assert "SpLiCE" in text and "Apache-2.0" in text
    win.about_dialog.reject()


def test_close_while_loading_stops_every_thread(qtbot, make_window, tiny_config, tmp_path):
    from tests.gui.conftest import make_words
    from splice_desktop.gui import workers

    vocab = tmp_path / "big.txt"
    vocab.write_text("\n".join(make_words(8000, seed=5)) + "\n", encoding="utf-8")
    win = make_window(config=tiny_config.with_changes(vocab_path=str(vocab)))
    qtbot.waitUntil(lambda: win.loader is not None and win.loader.isRunning(), timeout=10000)
    win.close()
    assert workers.running_threads() == []
    assert win.all_threads() == [] or not any(t.isRunning() for t in win.all_threads())


def test_heads_panel_gets_the_image_only_when_its_tab_is_shown(qtbot, make_window, photo_factory):
    win = make_window(autoload=False)
    if win.interpret_panel is None:
        pytest.skip("the CLIP-InterpreT panel is not available")
    img = photo_factory("h.jpg")
    with qtbot.waitSignal(win.imagesAdded, timeout=10000):
        win.add_paths([img])
    key = str(img.resolve())
    qtbot.waitUntil(lambda: win.current_image() == key, timeout=5000)
    assert win._interpret_image is None  # hidden tab: no forward pass started
    win.tabs.setCurrentWidget(win.interpret_panel)
    assert win._interpret_image == key


def test_app_smoke_run_exits_cleanly(tmp_path):
    """`run(["--tiny", "--smoke", MS])` in a fresh process: window, background load, clean quit, no traceback."""
    import os

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               SPLICE_DESKTOP_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    code = "import sys; from splice_desktop.gui.app import run; sys.exit(run(['--tiny', '--smoke', '6000']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "Destroyed while thread" not in out.stderr


def test_cancel_button_stops_concept_bank_build(qtbot, make_window, tiny_config, tmp_path):
    from tests.gui.conftest import make_words

    vocab = tmp_path / "big.txt"
    vocab.write_text("\n".join(make_words(8000, seed=7)) + "\n", encoding="utf-8")
    win = make_window(config=tiny_config.with_changes(vocab_path=str(vocab)))
    # Wait until the bank builder reports determinate progress (model loaded, concepts being encoded).
    qtbot.waitUntil(lambda: win.loader is not None and win.loader_progress.bar.maximum() > 0, timeout=60000)
    assert win.loader_progress.isVisible()
    qtbot.mouseClick(win.loader_progress.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.loader is None, timeout=30000)
    assert win.state is None  # nothing half-loaded is used
    assert "cancelled" in win.statusBar().currentMessage().lower()
    assert win.loader_progress.isHidden()


def test_lambda_is_remembered_across_windows(qtbot, make_window):
    win = make_window(autoload=False)
    win.analysis.set_lambda(0.375)
    win.close()
    assert AppSettings().lambda_value() == pytest.approx(0.375)
    win2 = make_window(autoload=False)
    assert win2.analysis.lambda_value() == pytest.approx(0.375)


def test_command_line_keeps_qt_options_apart_from_paths():
    from splice_desktop.gui.app import parse_args

    args, qt = parse_args(["-style", "fusion", "photos/", "--tiny", "--theme", "dark", "-platform=offscreen"])
    assert args.paths == ["photos/"]
    assert args.tiny and args.theme == "dark"
    assert qt == ["-style", "fusion", "-platform=offscreen"]


def test_image_view_scales_with_aspect_ratio_off_thread(qtbot, tmp_path):
    from PIL import Image

    from splice_desktop.gui.widgets.image_view import ImageView

    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 100), (200, 30, 30)).save(path)
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.imageShown, timeout=10000):
        view.set_path(str(path))
    img = view.grab().toImage()
    centre = img.pixelColor(150, 150)
    assert (centre.red(), centre.green(), centre.blue()) == pytest.approx((200, 30, 30), abs=3)
    top = img.pixelColor(150, 20)  # letterbox: a 4:1 image in a square leaves bands above and below
    assert top != centre
    view.set_path(None)
    assert view.image() is None
    view.shutdown()


def test_mean_from_loaded_images_is_computed_once_images_are_encoded(qtbot, make_window, tiny_config, photo_factory):
    win = make_window(config=tiny_config.with_changes(mean_from_images=True))
    st = wait_ready(qtbot, win)
    assert not st.image_mean.present  # nothing encoded yet
    imgs = [photo_factory(f"m{i}.jpg", seed=10 + i) for i in range(3)]
    win.add_paths(imgs)
    qtbot.waitUntil(lambda: win.state is not None and win.state.image_mean.present, timeout=120000)
    assert win.state.loaded is st.loaded  # only the mean (and decomposer) were rebuilt
    assert win.mean_label.text() == "image mean: present"


def test_clear_images_while_encoding_leaves_an_empty_list(qtbot, make_window, photo_factory, tmp_path):
    for i in range(40):
        photo_factory(f"c/{i}.jpg", size=(320, 240), seed=i)
    win = make_window()
    wait_ready(qtbot, win)
    win.add_paths([tmp_path / "c"])
    qtbot.waitUntil(lambda: win.encoder is not None, timeout=30000)
    win.clear_images()
    qtbot.wait(300)
    qtbot.waitUntil(lambda: not any(t.isRunning() for t in win._aux_tasks), timeout=30000)
    assert win.image_model.rowCount() == 0
    assert len(win.embeddings) == 0


def test_ctrl_v_pastes_clipboard_files(qtbot, make_window, photo_factory):
    from PySide6.QtGui import QGuiApplication

    img = photo_factory("clip.jpg")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(img))])
    QGuiApplication.clipboard().setMimeData(mime)
    win = make_window(autoload=False)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    win.list_view.setFocus()
    with qtbot.waitSignal(win.imagesAdded, timeout=10000) as blocker:
        qtbot.keyClick(win.list_view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args[0] == [str(img.resolve())]


def test_preferences_dialog_round_trips_every_field(qtbot, tmp_path):
    from splice_desktop.gui.dialogs.preferences import TINY_MODEL, PreferencesDialog
    from splice_desktop.gui.settings import PipelineConfig

    cfg = PipelineConfig(model_name="ViT-L-14", pretrained="openai", checkpoint=str(tmp_path / "w.safetensors"),
                         device="cpu", vocab_path=str(tmp_path / "v.txt"), vocab_size=5000, vocab_order="plain",
                         mean_path=str(tmp_path / "m.npy"), mean_from_images=False, ensemble=True)
    dlg = PreferencesDialog(cfg)
    qtbot.addWidget(dlg)
    assert dlg.config() == cfg
    dlg.tiny.setChecked(True)
    dlg.mean_compute.setChecked(True)
    dlg.vocab_default.setChecked(True)
    out = dlg.config()
    assert out.model_name == TINY_MODEL and out.pretrained is None and out.checkpoint is None
    assert out.mean_from_images and out.mean_path is None
    assert out.vocab_path is None and out.vocab_size == 5000
    applied = []
    dlg.applied.connect(applied.append)
    dlg.apply()
    assert applied == [out]
    # Settings store and read back the same config.
    settings = AppSettings()
    settings.set_pipeline(out)
    assert AppSettings().pipeline() == out


def test_failed_files_dialog_lists_reasons_and_copies(qtbot, tmp_path):
    from PySide6.QtGui import QGuiApplication

    from splice_desktop.core.errors import ImageLoadError
    from splice_desktop.gui.dialogs.failed_files import FailedFilesDialog

    dlg = FailedFilesDialog([ImageLoadError(tmp_path / "a.jpg", "truncated file"), (tmp_path / "b.png", "missing")])
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 2
    assert dlg.table.item(0, 1).text() == "truncated file"
    dlg.copy_to_clipboard()
    text = QGuiApplication.clipboard().text()
    assert "a.jpg\ttruncated file" in text and "b.png\tmissing" in text


def test_unusable_vocabulary_is_reported_in_a_box_not_a_crash(qtbot, make_window, tiny_config, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    win = make_window(config=tiny_config.with_changes(vocab_path=str(empty)))
    qtbot.waitUntil(lambda: getattr(win, "load_error_box", None) is not None, timeout=60000)
    assert "Preferences" in win.load_error_box.text()
    assert win.state is None and win.loader is None
    win.load_error_box.accept()


def test_status_messages_do_not_hide_progress_or_skipped_button(qtbot, make_window):
    win = make_window(autoload=False)
    win._add_failures([("/x/broken.jpg", "not an image")])
    win.encode_progress.show_progress("Encoding 1/10", 1, 10)
    win.statusBar().showMessage("a temporary message", 5000)
    qtbot.wait(10)
    assert win.skipped_button.isVisible()
    assert win.encode_progress.isVisible()
    assert win.encode_progress.cancel_button.isVisible()


def test_streamed_results_are_applied_in_order_before_encoding_finished(qtbot, make_window):
    """Encoder signals are queued and applied in slices: a large batch of cache hits is split into chunks, every
    row ends encoded with its own embedding, and encodingFinished comes only after all of them."""
    import numpy as np

    from splice_desktop.gui import workers
    from splice_desktop.gui.widgets.image_list import ENCODED, FAILED

    class FakeEncoder:  # stands in for the encoder thread: only identity and isRunning matter here
        def isRunning(self) -> bool:  # noqa: N802 - Qt API name
            return False

        def cancel(self) -> None:
            pass

    win = make_window(autoload=False)
    keys = [f"/nowhere/img{i:03d}.jpg" for i in range(150)]
    win.image_model.add_paths(keys, resolved=True)
    vecs = np.random.default_rng(0).normal(size=(150, 8)).astype(np.float32)
    enc = win.encoder = FakeEncoder()
    seen_at_finish: list[int] = []
    win.encodingFinished.connect(lambda: seen_at_finish.append(len(win.embeddings)))
    failure = (keys[-1], "unreadable")
    win._queue_encoder_event(enc, "batch", workers.EncodedBatch(keys[:140], vecs[:140], []))
    win._queue_encoder_event(enc, "batch", workers.EncodedBatch(keys[140:149], vecs[140:149], [failure]))
    win._queue_encoder_event(enc, "done", None)
    win._queue_encoder_event(FakeEncoder(), "batch", workers.EncodedBatch(["/elsewhere.jpg"], vecs[:1], []))
    qtbot.waitUntil(lambda: bool(seen_at_finish), timeout=5000)
    assert seen_at_finish == [149]  # every result was applied before the finish signal
    assert win.encoder is None
    np.testing.assert_array_equal(win.embeddings.matrix(), vecs[:149])
    assert win.image_model.paths(ENCODED) == keys[:149]
    assert win.image_model.paths(FAILED) == [keys[-1]]
    idx = win.image_model.index(149)
    assert "unreadable" in idx.data(Qt.ItemDataRole.ToolTipRole)
    qtbot.waitUntil(lambda: not win._encoder_events, timeout=5000)
    assert "/elsewhere.jpg" not in win.embeddings  # results of an encoder that is not the current one are dropped
