"""End to end with the real window, the tiny model and a small generated vocabulary.

Drop two images as a real QDropEvent, wait for their decompositions, move the l1 slider, remove a concept and see
the zero-shot panel change, undo, export CSV/JSON and read them back, and close while encoding.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from tests.gui.conftest import wait_ready


def _real_drop(win, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(win.width() / 2, win.height() / 2)
    with warnings.catch_warnings():  # Qt 6.12 deprecates the QPoint overload but offers no QPointF one in PySide
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    win.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    win.dropEvent(drop)
    assert drop.isAccepted()


def _shown(win, key):
    dec = win.analysis.current_decomposition()
    return dec is not None and win.analysis.current_key() == key


def _comparison_edited(win):
    comp = win.analysis.zeroshot_panel.comparison()
    # Without edits the edited column equals the recomposition (p_edited may be None then).
    return {r.name: float(r.p_recomposed if r.p_edited is None else r.p_edited) for r in comp.rows}


def test_drop_decompose_slide_edit_undo_export(qtbot, make_window, photo_factory, tmp_path):
    a = photo_factory("a.jpg", size=(320, 240), seed=1)
    b = photo_factory("b.png", size=(200, 300), seed=2, fmt="PNG")
    win = make_window()
    wait_ready(qtbot, win, timeout=180000)
    _real_drop(win, [a, b])
    ka, kb = str(a.resolve()), str(b.resolve())
    qtbot.waitUntil(lambda: win.image_model.rowCount() == 2, timeout=10000)
    qtbot.waitUntil(lambda: ka in win.embeddings and kb in win.embeddings, timeout=120000)
    assert win.image_model.status(ka) == "encoded"
    # The first dropped image is selected and decomposed.
    qtbot.waitUntil(lambda: _shown(win, ka), timeout=60000)
    assert win.image_view.path == ka
    qtbot.waitUntil(lambda: win.image_view.image() is not None, timeout=20000)

    # Put lambda in the middle of the path so moving it either way changes l0.
    view = win.analysis
    dec0 = view.current_decomposition()
    lam_max = dec0.lambda_max
    view.set_lambda(0.5 * lam_max)
    qtbot.waitUntil(lambda: abs(view.current_decomposition().lam - 0.5 * lam_max) < 1e-9, timeout=30000)
    dec_mid = view.current_decomposition()
    assert dec_mid.l0 >= 1

    # Move the slider down with the keyboard (two large steps): lower lambda -> l0 not smaller.
    slider = view.slider.slider
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_PageDown)
    qtbot.keyClick(slider, Qt.Key.Key_PageDown)
    view.slider.flush()
    qtbot.waitUntil(lambda: view.current_decomposition().lam < dec_mid.lam - 1e-9, timeout=30000)
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=30000)
    dec_low = view.current_decomposition()
    assert dec_low.lam < dec_mid.lam
    assert dec_low.l0 >= dec_mid.l0
    assert view.slider.l0_text() == f"l0 = {dec_low.l0}"

    # Remove the strongest concept: the edited zero-shot column changes; undo restores it.
    qtbot.waitUntil(lambda: view.zeroshot_panel.comparison() is not None, timeout=60000)
    before = _comparison_edited(win)
    top = dec_low.words[0]
    assert view.editor.select_concept(top)
    view.editor.remove_selected()
    qtbot.waitUntil(lambda: top in view.edit_state(ka).removed, timeout=5000)
    qtbot.waitUntil(lambda: view.current_decomposition() is not None
                    and top in view.current_decomposition().edits.removed, timeout=30000)
    after = _comparison_edited(win)
    common = set(before) & set(after)
    assert common
    assert max(abs(before[n] - after[n]) for n in common) > 1e-6, "removing a concept changed no prediction"
    assert win.undo_action.isEnabled()
    win.undo_action.trigger()
    qtbot.waitUntil(lambda: top not in view.edit_state(ka).removed, timeout=5000)
    qtbot.waitUntil(lambda: view.current_decomposition() is not None
                    and not view.current_decomposition().edits.removed, timeout=30000)
    restored = _comparison_edited(win)
    for n in set(before) & set(restored):
        assert restored[n] == pytest.approx(before[n], abs=1e-6)

    # Export the shown decomposition and read it back.
    dec = view.current_decomposition()
    csv_path = win.export_current(tmp_path / "out" / "dec.csv")
    json_path = win.export_current(tmp_path / "out" / "dec.json")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == dec.l0
    concept_col = next(c for c in rows[0] if "concept" in c.lower())
    assert [r[concept_col] for r in rows] == list(dec.words)
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert ka in json.dumps(data)
    assert all(w in json.dumps(data) for w in dec.words)
    png = win.export_current(tmp_path / "out" / "chart.png")
    svg = win.export_current(tmp_path / "out" / "chart.svg")
    assert png.stat().st_size > 1000
    assert "<svg" in svg.read_text(encoding="utf-8", errors="replace")

    # Export all images at the current lambda (background task) and read back.
    task = win.export_all(tmp_path / "out" / "all.csv")
    qtbot.waitUntil(lambda: win.last_export == tmp_path / "out" / "all.csv", timeout=60000)
    task.wait(5000)
    with open(tmp_path / "out" / "all.csv", newline="", encoding="utf-8") as fh:
        all_rows = list(csv.DictReader(fh))
    image_col = next(c for c in all_rows[0] if "image" in c.lower())
    assert {Path(r[image_col]).name for r in all_rows} == {"a.jpg", "b.png"}

    # Selecting the other image shows its own decomposition.
    assert win.select_image(b)
    qtbot.waitUntil(lambda: _shown(win, kb), timeout=60000)
    assert not np.allclose(view.current_decomposition().z_hat, dec.z_hat)


def test_session_round_trip(qtbot, make_window, photo_factory, tmp_path):
    a = photo_factory("s1.jpg", seed=3)
    b = photo_factory("s2.jpg", seed=4)
    win = make_window()
    wait_ready(qtbot, win, timeout=180000)
    win.add_paths([a, b])
    ka = str(a.resolve())
    qtbot.waitUntil(lambda: _shown(win, ka), timeout=120000)
    view = win.analysis
    word = view.current_decomposition().words[0]
    view.editor.select_concept(word)
    view.editor.remove_selected()
    qtbot.waitUntil(lambda: word in view.edit_state(ka).removed, timeout=5000)
    view.set_lambda(0.123)
    path = win.save_session(tmp_path / "my.splice.json")
    win.close()

    win2 = make_window()
    wait_ready(qtbot, win2, timeout=180000)
    win2.open_session(path)
    qtbot.waitUntil(lambda: win2.image_model.rowCount() == 2, timeout=10000)
    qtbot.waitUntil(lambda: word in win2.analysis.edit_state(ka).removed, timeout=60000)
    assert win2.analysis.lambda_value() == pytest.approx(0.123)


def test_close_during_encoding_stops_cleanly(qtbot, make_window, photo_factory, tmp_path):
    from splice_desktop.core.cache import cache_root
    from splice_desktop.gui import workers

    for i in range(80):
        photo_factory(f"many/img{i:03d}.jpg", size=(640, 480), seed=100 + i)
    win = make_window()
    wait_ready(qtbot, win, timeout=180000)
    win.add_paths([tmp_path / "many"])
    qtbot.waitUntil(lambda: win.encoder is not None and win.encoder.isRunning(), timeout=30000)
    qtbot.waitUntil(lambda: len(win.embeddings) > 0 or not win.encoder or not win.encoder.isRunning(), timeout=60000)
    encoder = win.encoder
    print(f"closing with {len(win.embeddings)}/80 encoded, encoder running: {encoder is not None}")
    win.close()
    assert workers.running_threads() == []
    if encoder is not None:
        assert not encoder.isRunning()
    assert len(win.embeddings) < 80 or encoder is None  # stopped early (or had already finished)
    leftovers = [p for p in cache_root().rglob("*.tmp")]
    assert leftovers == [], f"half-written files left behind: {leftovers}"


def test_heads_tab_in_the_real_window(qtbot, make_window, photo_factory, tmp_path):
    """The CLIP-InterpreT tab inside the main window follows the selected image and runs analyses on a pool."""
    from tests.conftest import make_photo_like

    pool = tmp_path / "pool"
    for i in range(5):
        make_photo_like(pool / f"p{i}.jpg", size=(80, 64), seed=40 + i)
    a = photo_factory("query.jpg", size=(160, 120), seed=7)
    win = make_window()
    wait_ready(qtbot, win, timeout=180000)
    qtbot.waitUntil(lambda: win.interpret_panel is not None, timeout=60000)
    panel = win.interpret_panel
    _real_drop(win, [a])
    key = str(a.resolve())
    qtbot.waitUntil(lambda: key in win.embeddings, timeout=120000)
    win.tabs.setCurrentWidget(panel)  # the panel only receives images while it is visible
    qtbot.waitUntil(lambda: panel.session is not None and panel.session.decomposition is not None, timeout=60000)

    panel.set_pool_folders([pool])
    with qtbot.waitSignal(panel.index_finished, timeout=60000):
        panel.build_index()
    assert len(panel.pool) == 5

    panel.tabs.setCurrentIndex(1)
    panel.topic_text.setText("a red square")
    with qtbot.waitSignal(panel.analysis_finished, timeout=60000, check_params_cb=lambda t: t == "topic"):
        panel.run_topic()
    assert panel.topic_view.has_content()

    panel.tabs.setCurrentIndex(3)
    with qtbot.waitSignal(panel.analysis_finished, timeout=60000, check_params_cb=lambda t: t == "image_nn"):
        panel.run_image_nn()
    assert "Searched 5 images" in panel.image_note.text()
    assert panel.session.forward_count == 1, "analyses must answer from the cached forward pass"
