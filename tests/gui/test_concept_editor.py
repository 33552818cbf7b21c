"""ConceptEditor: listing, remove/restore/scale/mode/reset requests, Delete key, vocabulary search."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from splice_desktop.core.decompose import EditState
from splice_desktop.gui.widgets.concept_editor import ConceptEditor
from tests.gui.test_solve_worker import (  # noqa: F401 - shared fixtures
    analysis_bank,
    analysis_decomposer,
    image_embeddings,
)


@pytest.fixture
def setup(qtbot, analysis_decomposer, image_embeddings):
    z = next(iter(image_embeddings.values()))
    base = analysis_decomposer.decompose(z, 0.2 * analysis_decomposer.lambda_max(z))
    ed = ConceptEditor()
    qtbot.addWidget(ed)
    ed.set_vocabulary(analysis_decomposer.words)
    ed.set_state(base, EditState())
    calls: dict[str, list] = {k: [] for k in ("remove", "restore", "scale", "mode", "reset")}
    ed.removeRequested.connect(calls["remove"].append)
    ed.restoreRequested.connect(calls["restore"].append)
    ed.scaleRequested.connect(lambda w, s: calls["scale"].append((w, s)))
    ed.modeRequested.connect(calls["mode"].append)
    ed.resetRequested.connect(lambda: calls["reset"].append(True))
    return ed, base, calls


def test_lists_solved_concepts(setup):
    ed, base, _ = setup
    assert ed.concepts() == list(base.words)
    assert ed.model.rowCount() == base.l0
    assert ed.cell_text(0, 1) == f"{base.weights[0]:.4f}"
    assert not ed.remove_button.isEnabled() and not ed.reset_button.isEnabled()


def test_remove_via_button_and_delete_key(qtbot, setup):
    ed, base, calls = setup
    ed.select_concept(base.words[1])
    assert ed.remove_button.isEnabled() and not ed.restore_button.isEnabled()
    ed.remove_button.click()
    assert calls["remove"] == [[base.words[1]]]
    ed.select_concept(base.words[0])
    qtbot.keyClick(ed.table, Qt.Key.Key_Delete)
    assert calls["remove"][-1] == [base.words[0]]


def test_removed_rows_restore_and_reset(setup):
    ed, base, calls = setup
    w = base.words[0]
    ed.set_state(base, EditState(removed=frozenset({w, "notactive"})))
    assert ed.status_of(w) == "removed"
    assert ed.status_of("notactive") == "removed (inactive)"  # edited but inactive: still listed
    assert ed.reset_button.isEnabled()
    ed.select_concept(w)  # selection survives a redraw and drives the buttons
    assert ed.restore_button.isEnabled() and not ed.remove_button.isEnabled()
    assert not ed.scale_spin.isEnabled()
    ed.restore_button.click()
    assert calls["restore"] == [[w]]
    ed.reset_button.click()
    assert calls["reset"] == [True]


def test_scale_and_mode_requests(setup):
    ed, base, calls = setup
    ed.select_concept(base.words[2])
    assert ed.scale_spin.isEnabled() and ed.scale_spin.value() == 1.0
    ed.scale_spin.setValue(2.5)
    assert calls["scale"] == [(base.words[2], 2.5)]
    ed.mode_buttons["resolve"].setChecked(True)
    assert calls["mode"] == ["resolve"]
    ed.set_state(base, EditState(mode="resolve", scales={base.words[2]: 2.5}))
    assert ed.mode() == "resolve"
    ed.select_concept(base.words[2])
    assert ed.scale_spin.value() == 2.5
    assert ed.cell_text(2, 3) == "scaled x2.5"
    assert calls["mode"] == ["resolve"]  # programmatic state changes emit nothing
    assert "authors" in ed.mode_buttons["zero"].text() and "Re-solve" in ed.mode_buttons["resolve"].text()


def test_search(setup, analysis_decomposer):
    ed, base, _ = setup
    msg = ed.find("zzzz-not-a-word")
    assert "not in the vocabulary" in msg and ed.message.text() == msg
    msg = ed.find(base.words[3])
    assert ed.selected_concepts() == [base.words[3]] and f"{base.weights[3]:.4f}" in msg
    inactive = next(w for w in analysis_decomposer.words if w not in base.words)
    msg = ed.find(inactive.upper())  # case-insensitive
    assert "inactive" in msg and "weight 0" in msg
    assert ed.find("  ") == ""
    completer = ed.search.completer()
    assert completer.model().rowCount() == len(analysis_decomposer.words)
