"""LambdaSlider: throttled live values, one commit per gesture, keyboard steps, spinbox; LambdaCommand merging."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack

from splice_desktop.gui.undo import LambdaCommand
from splice_desktop.gui.widgets.lambda_slider import THROTTLE_MS, TICKS, LambdaSlider


@pytest.fixture
def slider(qtbot):
    s = LambdaSlider()
    qtbot.addWidget(s)
    s.set_range(2.0)
    s.set_value(0.5)
    live: list[float] = []
    commits: list[tuple] = []
    s.valueChanging.connect(live.append)
    s.valueCommitted.connect(lambda a, b, g: commits.append((a, b, g)))
    s.live, s.commits = live, commits
    return s


def test_programmatic_set_is_exact_and_silent(slider):
    slider.set_value(0.123456)
    assert slider.value() == 0.123456
    assert slider.slider.value() == round(0.123456 / 2.0 * TICKS)
    assert slider.spin.value() == pytest.approx(0.1235, abs=1e-4)
    assert slider.live == [] and slider.commits == []
    slider.set_l0(7)
    assert slider.l0_text() == "l0 = 7"
    slider.set_l0(None)
    assert "–" in slider.l0_text()


def test_drag_burst_is_throttled_last_value_emitted_one_commit(qtbot, slider):
    s = slider.slider
    s.setSliderDown(True)
    for t in range(300, 800, 5):  # 100 ticks in one burst
        s.setValue(t)
    assert len(slider.live) == 1  # leading edge only, the rest waits for the timer
    qtbot.wait(THROTTLE_MS * 3)
    assert slider.live[-1] == pytest.approx(2.0 * 795 / TICKS)  # trailing edge: the newest value
    assert len(slider.live) == 2
    assert slider.commits == []  # nothing committed while the button is down
    s.setSliderDown(False)
    assert len(slider.commits) == 1
    old, new, _ = slider.commits[0]
    assert old == 0.5 and new == pytest.approx(2.0 * 795 / TICKS)


def test_release_flushes_pending_value(qtbot, slider):
    s = slider.slider
    s.setSliderDown(True)
    s.setValue(100)
    s.setValue(200)  # pending in the throttle
    s.setSliderDown(False)  # release emits it at once
    assert slider.live[-1] == pytest.approx(0.4)


def test_keyboard_steps(qtbot, slider):
    slider.slider.setValue(0)
    slider.live.clear()
    slider.commits.clear()
    qtbot.keyClick(slider.slider, Qt.Key.Key_PageUp)
    assert slider.value() == pytest.approx(0.2)  # large step: 10% of lambda_max
    qtbot.wait(THROTTLE_MS * 2)
    qtbot.keyClick(slider.slider, Qt.Key.Key_Right)
    assert slider.value() == pytest.approx(0.22)  # small step: 1%
    qtbot.wait(THROTTLE_MS * 2)
    assert slider.live[-1] == pytest.approx(0.22)
    assert len(slider.commits) == 2
    assert slider.commits[0][2] == slider.commits[1][2]  # quick presses share one gesture id


def test_spinbox_sets_value_and_commits(slider):
    slider.spin.setValue(1.25)
    assert slider.value() == pytest.approx(1.25)
    assert slider.slider.value() == round(1.25 / 2.0 * TICKS)
    assert slider.live[-1] == pytest.approx(1.25)
    assert slider.commits[-1][:2] == (0.5, pytest.approx(1.25))


def test_range_change_keeps_value(slider):
    slider.set_range(0.25)
    assert slider.value() == 0.5  # kept; only the display is clamped
    assert slider.slider.value() == TICKS
    assert slider.spin.maximum() == pytest.approx(0.25)


class _Target:
    def __init__(self):
        self.lam = 0.0

    def _apply_lambda(self, lam):
        self.lam = lam

    def _apply_edit_state(self, key, state):  # pragma: no cover - unused here
        raise AssertionError


def test_lambda_commands_merge_per_gesture():
    t = _Target()
    stack = QUndoStack()
    stack.push(LambdaCommand(t, 0.0, 0.1, gesture=1))
    stack.push(LambdaCommand(t, 0.1, 0.2, gesture=1))
    stack.push(LambdaCommand(t, 0.2, 0.3, gesture=1))
    assert stack.count() == 1 and t.lam == 0.3
    stack.push(LambdaCommand(t, 0.3, 0.4, gesture=2))
    assert stack.count() == 2
    stack.undo()
    assert t.lam == 0.3
    stack.undo()
    assert t.lam == 0.0
    stack.redo()
    assert t.lam == 0.3
    stack.push(LambdaCommand(t, 0.3, 0.5, gesture=None))
    stack.push(LambdaCommand(t, 0.5, 0.6, gesture=None))
    assert stack.count() == 3  # no gesture: never merged


def test_gesture_returning_to_start_leaves_no_step():
    t = _Target()
    stack = QUndoStack()
    stack.push(LambdaCommand(t, 0.2, 0.3, gesture=5))
    stack.push(LambdaCommand(t, 0.3, 0.2, gesture=5))
    assert stack.count() == 0 and t.lam == 0.2


def test_scale_steps_on_one_concept_merge():
    from splice_desktop.core.decompose import EditState
    from splice_desktop.gui.undo import RemoveConceptsCommand, ScaleConceptCommand

    class T(_Target):
        def __init__(self):
            super().__init__()
            self.states = {}

        def _apply_edit_state(self, key, state):
            self.states[key] = state

    t = T()
    stack = QUndoStack()
    s0 = EditState()
    s1 = EditState(scales={"dog": 1.1})
    s2 = EditState(scales={"dog": 1.2})
    stack.push(ScaleConceptCommand(t, "a", s0, s1, "dog", 1.1))
    stack.push(ScaleConceptCommand(t, "a", s1, s2, "dog", 1.2))
    assert stack.count() == 1 and t.states["a"] == s2
    s3 = EditState(scales={"dog": 1.2, "cat": 2.0})
    stack.push(ScaleConceptCommand(t, "a", s2, s3, "cat", 2.0))  # other concept: own step
    s4 = EditState(removed=frozenset({"cat"}), scales=s3.scales)
    stack.push(RemoveConceptsCommand(t, "a", s3, s4, ["cat"]))
    assert stack.count() == 3
    stack.undo()
    stack.undo()
    stack.undo()
    assert t.states["a"] == s0
