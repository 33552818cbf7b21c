"""AnalysisView end to end with the real core: tiny model, a 300-word random vocabulary, a real zero-shot head."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from splice_desktop.core.decompose import EditState
from splice_desktop.gui.analysis_view import AnalysisView
from splice_desktop.gui.solve_worker import SolveResult
from tests.gui.test_solve_worker import (  # noqa: F401 - shared fixtures
    analysis_bank,
    analysis_decomposer,
    image_embeddings,
)

CLASSES = "cat\ndog\nfire truck\nbanana\nmountain\nsailboat\npiano\nsoup\nbridge\nowl\ntulip\nrobot"


@pytest.fixture(scope="session")
def zs_head(tiny_model):
    from splice_desktop.core.zeroshot import ZeroShotHead, classes_from_text

    head = ZeroShotHead(tiny_model, classes_from_text(CLASSES), use_cache=False)
    head.prepare()
    return head


@pytest.fixture
def view(qtbot, analysis_decomposer, zs_head):
    v = AnalysisView()
    qtbot.addWidget(v)
    v.resize(1000, 750)
    v.set_context(analysis_decomposer, zs_head, meaningless=True)
    yield v
    threads = [t for t in (v._solve_thread, v._head_thread, v._path_thread) if t is not None]
    v.shutdown()
    assert all(not t.isRunning() for t in threads)


def settle(qtbot, view, timeout=20000):
    qtbot.waitUntil(lambda: not view.is_busy() and view.current_decomposition() is not None, timeout=timeout)
    return view.current_decomposition()


def show_first(qtbot, view, image_embeddings, index=0):
    key, z = list(image_embeddings.items())[index]
    view.show_image(key, z)
    return key, z, settle(qtbot, view)


def test_show_image_matches_core(qtbot, view, analysis_decomposer, image_embeddings):
    view.set_lambda(0.3)
    key, z, dec = show_first(qtbot, view, image_embeddings)
    direct = analysis_decomposer.decompose(z, 0.3)
    assert dec.words == direct.words and dec.l0 == direct.l0
    assert view.slider.lambda_max() == pytest.approx(analysis_decomposer.lambda_max(z), rel=1e-6)
    assert view.slider.l0_text() == f"l0 = {dec.l0}"
    assert [r.word for r in view.chart.rows()] == list(dec.words[: view.chart.max_bars])
    assert view.editor.concepts()[: dec.l0] == list(dec.words)
    assert view.chart.banner.isVisibleTo(view.chart)  # tiny model: labelled meaningless
    assert view.zeroshot_panel.banner.isVisibleTo(view.zeroshot_panel)
    assert view.zeroshot_panel.table.rowCount() >= 5
    view.show_image("", None)
    assert view.current_decomposition() is None and view.chart.rows() == []


def test_slider_burst_is_throttled_and_last_value_solved(qtbot, view, image_embeddings):
    show_first(qtbot, view, image_embeddings)
    solver = view.solver
    before = solver.processed
    s = view.slider.slider
    s.setSliderDown(True)
    ticks = list(range(100, 700, 6))  # 100 valueChanged in one burst
    for t in ticks:
        s.setValue(t)
    s.setSliderDown(False)
    dec = settle(qtbot, view)
    expected = view.slider.lambda_max() * ticks[-1] / 1000
    assert view.lambda_value() == pytest.approx(expected)
    assert dec.lam == pytest.approx(expected)  # the last position is always solved
    solves = solver.processed - before
    assert solves > 0, "the final slider position must reach the solver"
    assert solves <= 5, solves  # far fewer solves than the 100 ticks
    assert view.slider.emitted_count < 10


def test_spread_drag_few_solves_one_undo_step(qtbot, view, image_embeddings):
    _, _, dec0 = show_first(qtbot, view, image_embeddings)
    lam0 = view.lambda_value()
    n_undo = view.undo_stack.count()
    solver = view.solver
    before = solver.processed
    s = view.slider.slider
    s.setSliderDown(True)
    for t in range(50, 800, 15):  # 50 ticks over ~250 ms, like a real drag
        s.setValue(t)
        qtbot.wait(5)
    s.setSliderDown(False)
    dec = settle(qtbot, view)
    assert solver.processed - before < 50
    assert view.undo_stack.count() == n_undo + 1  # the whole drag is ONE undo step
    assert dec.lam == pytest.approx(view.slider.lambda_max() * 785 / 1000)
    view.undo_stack.undo()
    dec_undone = settle(qtbot, view)
    assert view.lambda_value() == pytest.approx(lam0)
    assert dec_undone.lam == pytest.approx(lam0) and dec_undone.l0 == dec0.l0
    view.undo_stack.redo()
    assert settle(qtbot, view).lam == pytest.approx(dec.lam)


def test_keyboard_steps_merge_and_l0_decreases(qtbot, view, image_embeddings):
    show_first(qtbot, view, image_embeddings)
    view.set_lambda(0.05 * view.slider.lambda_max())
    l0_start = settle(qtbot, view).l0
    n_undo = view.undo_stack.count()
    view.slider.slider.setFocus()
    for _ in range(3):
        qtbot.keyClick(view.slider.slider, Qt.Key.Key_PageUp)  # +10% of lambda_max each
    dec = settle(qtbot, view)
    assert dec.lam == pytest.approx(0.35 * view.slider.lambda_max(), rel=1e-3)
    assert dec.l0 < l0_start
    assert view.undo_stack.count() == n_undo + 1  # quick key presses merge into one step


def test_l0_monotone_along_slider(qtbot, view, image_embeddings):
    show_first(qtbot, view, image_embeddings, index=1)
    lmax = view.slider.lambda_max()
    l0s = []
    for frac in (0.02, 0.1, 0.25, 0.5, 0.75, 0.95, 1.0):
        view.set_lambda(frac * lmax)
        l0s.append(settle(qtbot, view).l0)
    assert l0s[0] > l0s[-2] >= l0s[-1] == 0
    # the positive-lasso path can drop variables, so l0 is not strictly monotone everywhere; the trend is
    assert sum(b > a for a, b in zip(l0s, l0s[1:])) <= 1, l0s


def test_remove_concept_changes_zero_shot_and_undo_restores(qtbot, view, image_embeddings):
    view.set_lambda(0.1)
    key, z, dec = show_first(qtbot, view, image_embeddings)
    assert dec.l0 >= 2
    top = dec.words[0]
    cmp0 = view.zeroshot_panel.comparison()
    assert cmp0 is not None and not cmp0.has_edit
    assert view.zeroshot_panel.cell_text(0, 3) == "–"
    assert view.editor.select_concept(top)
    view.editor.remove_button.click()
    dec_edit = settle(qtbot, view)
    assert dec_edit.weight_of(top) == 0.0 and dec_edit.mode == "zero"
    assert view.edit_state(key).removed == frozenset({top})
    cmp1 = view.zeroshot_panel.comparison()
    assert cmp1.has_edit
    assert np.abs(cmp1.p_edited - cmp1.p_recomposed).max() > 1e-6  # the edited column moved
    assert any(view.zeroshot_panel.cell_text(r, 4) != "0.0 pp" for r in range(view.zeroshot_panel.table.rowCount()))
    removed_rows = [r for r in view.chart.rows() if r.status == "removed"]
    assert [r.word for r in removed_rows] == [top]  # shown greyed, not hidden
    assert view.editor.status_of(top) == "removed"

    view.undo_stack.undo()
    dec_back = settle(qtbot, view)
    assert dec_back.words == dec.words and view.edit_state(key) == EditState()
    assert not view.zeroshot_panel.comparison().has_edit
    view.undo_stack.redo()
    assert settle(qtbot, view).weight_of(top) == 0.0


def test_resolve_mode_scale_and_reset(qtbot, view, analysis_decomposer, image_embeddings):
    view.set_lambda(0.1)
    key, z, dec = show_first(qtbot, view, image_embeddings)
    top, second = dec.words[0], dec.words[1]
    view.editor.select_concept(top)
    qtbot.keyClick(view.editor.table, Qt.Key.Key_Delete)  # Delete key removes
    settle(qtbot, view)
    view.editor.mode_buttons["resolve"].setChecked(True)
    dec_r = settle(qtbot, view)
    expected = analysis_decomposer.edit(z, analysis_decomposer.decompose(z, 0.1),
                                        EditState(removed=frozenset({top}), mode="resolve"))
    assert dec_r.mode == "resolve" and dec_r.words == expected.words
    view.editor.select_concept(second)
    view.editor.scale_spin.setValue(2.0)
    dec_s = settle(qtbot, view)
    assert view.edit_state(key).scales == {second: 2.0}
    assert [r.status for r in view.chart.rows() if r.word == second] == ["scaled"]
    n = view.undo_stack.count()
    view.editor.reset_button.click()
    dec_reset = settle(qtbot, view)
    assert view.edit_state(key).is_empty and dec_reset.words == dec.words
    assert view.undo_stack.count() == n + 1
    view.undo_stack.undo()  # reset is undoable
    assert settle(qtbot, view).words == dec_s.words


def test_edits_are_kept_per_image(qtbot, view, image_embeddings):
    view.set_lambda(0.1)
    ka, _, dec_a = show_first(qtbot, view, image_embeddings, 0)
    view.editor.select_concept(dec_a.words[0])
    view.editor.remove_selected()
    settle(qtbot, view)
    kb, _, dec_b = show_first(qtbot, view, image_embeddings, 1)
    assert view.edit_state(kb).is_empty and dec_b.edits.is_empty
    _, _, dec_a2 = show_first(qtbot, view, image_embeddings, 0)
    assert dec_a2.edits.removed == frozenset({dec_a.words[0]})
    view.set_edit_state(kb, EditState(removed=frozenset({dec_b.words[0]})))  # no undo step, e.g. session load
    assert view.edit_state(kb).removed == frozenset({dec_b.words[0]})


def test_stale_results_are_ignored(qtbot, view, image_embeddings):
    key, z, dec = show_first(qtbot, view, image_embeddings)
    res = view.current_result()
    stale = SolveResult(generation=res.generation - 1, key=key, lam=0.9, lambda_max=res.lambda_max,
                        base=res.base, edited=res.edited)
    view._on_result(stale)
    assert view.stale_results >= 1 and view.current_result() is res


def test_chart_click_selects_in_editor(qtbot, view, image_embeddings):
    view.set_lambda(0.1)
    view.show()
    qtbot.waitExposed(view)
    _, _, dec = show_first(qtbot, view, image_embeddings)
    word = dec.words[1]
    qtbot.wait(50)
    scene_pos = view.chart.row_scene_pos(word)
    pw = view.chart.plot_widget
    pt = pw.mapFromScene(scene_pos)
    with qtbot.waitSignal(view.chart.conceptClicked, timeout=3000) as blocker:
        qtbot.mouseClick(pw.viewport(), Qt.MouseButton.LeftButton, pos=pt)
    assert blocker.args == [word]
    assert view.editor.selected_concepts() == [word]


def test_exports_are_readable(qtbot, view, image_embeddings, tmp_path):
    show_first(qtbot, view, image_embeddings)
    png = view.export_chart_png(tmp_path / "chart.png")
    img = QImage(str(png))
    assert not img.isNull() and img.width() > 100 and img.height() > 100
    svg = view.export_chart_svg(tmp_path / "chart.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text(encoding="utf-8")
    assert view.current_decomposition().words[0] in text  # vector text, not a bitmap
    assert not list(tmp_path.glob("*.tmp*"))


def test_classes_changed_rebuilds_head_off_gui_thread(qtbot, view, tiny_model, image_embeddings):
    view.set_model(tiny_model)
    show_first(qtbot, view, image_embeddings)
    view.zeroshot_panel.set_classes_from_text("red apple\ngreen pear\nyellow lemon")
    qtbot.waitUntil(lambda: view._head is not None and len(view._head.classes) == 3 and not view.is_busy(),
                    timeout=30000)
    settle(qtbot, view)
    names = {r.name for r in view.zeroshot_panel.comparison().rows}
    assert names <= {"red apple", "green pear", "yellow lemon"} and names
    assert "typed" in view.zeroshot_panel.source_label.text()


def test_shutdown_leaves_no_thread(qtbot, analysis_decomposer, zs_head, image_embeddings):
    v = AnalysisView()
    qtbot.addWidget(v)
    v.set_context(analysis_decomposer, zs_head, meaningless=False)
    key, z = next(iter(image_embeddings.items()))
    v.show_image(key, z)  # shut down while (possibly) computing
    threads = [v._solve_thread, v._head_thread, v._path_thread]
    assert all(t.isRunning() for t in threads)
    v.shutdown()
    assert all(not t.isRunning() for t in threads)
    v.shutdown()  # idempotent
    v.set_lambda(0.4)  # no crash and no new thread after shutdown
    assert v.solver is None


def test_busy_signal_and_failure_shown_without_crash(qtbot, view, image_embeddings):
    busy: list[bool] = []
    view.busyChanged.connect(busy.append)
    show_first(qtbot, view, image_embeddings)
    assert busy[0] is True and busy[-1] is False
    view.set_lambda(0.0)  # tiny model (d = 32): lambda 0 would need more than d concepts -> typed core error
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=20000)
    assert view.current_decomposition() is None  # the core refused: the reason is shown, nothing stale remains
    assert "failed" in view.chart.header.text() and "lambda" in view.chart.header.text()
    assert view.chart.rows() == [] and view.zeroshot_panel.comparison() is None
    view.set_lambda(0.3)
    assert settle(qtbot, view).lam == pytest.approx(0.3)


def test_shutdown_cancels_running_path(qtbot, monkeypatch, analysis_decomposer, zs_head, image_embeddings):
    import threading
    import time

    import splice_desktop.gui.solve_worker as sw

    entered = threading.Event()

    def never_ending(dec, z, ratio, cancel):  # a path that only stops when cancelled
        entered.set()
        while True:
            cancel.raise_if_cancelled()
            time.sleep(0.005)

    monkeypatch.setattr(sw, "compute_stage", never_ending)
    v = AnalysisView()
    qtbot.addWidget(v)
    v.set_context(analysis_decomposer, zs_head, meaningless=True)
    key, z = next(iter(image_embeddings.items()))
    v.show_image(key, z)
    assert settle(qtbot, v) is not None  # the cold solve answers while the path is still running
    qtbot.waitUntil(entered.is_set, timeout=10000)  # the path starts shortly after the first answer
    path_worker, threads = v._path_worker, [v._solve_thread, v._head_thread, v._path_thread]
    v.shutdown()
    assert all(not t.isRunning() for t in threads)
    assert path_worker.cancelled == 1
