"""ZeroShotPanel with a real ZeroShotHead on the tiny model: columns, signed shifts, k, class-list sources."""

from __future__ import annotations

import pytest

from splice_desktop.gui.widgets.zeroshot_panel import ZeroShotPanel, shift_text
from tests.gui.test_solve_worker import (  # noqa: F401 - shared fixtures
    analysis_bank,
    analysis_decomposer,
    image_embeddings,
)


@pytest.fixture(scope="module")
def head(tiny_model):
    from splice_desktop.core.zeroshot import ZeroShotHead, classes_from_text

    h = ZeroShotHead(tiny_model, classes_from_text("cat\ndog\nowl\npiano\nsoup\nbridge\ntulip"), use_cache=False)
    h.prepare()
    return h


@pytest.fixture
def panel(qtbot):
    p = ZeroShotPanel()
    qtbot.addWidget(p)
    return p


def test_shift_text_readable_without_colour():
    assert shift_text(0.032) == "+3.2 pp ▲"
    assert shift_text(-0.01) == "-1.0 pp ▼"
    assert shift_text(0.0001) == "0.0 pp"


def test_three_columns_and_shift(panel, head, analysis_decomposer, image_embeddings):
    z = next(iter(image_embeddings.values()))
    base = analysis_decomposer.decompose(z, 0.1)
    edited = analysis_decomposer.edit(z, base, removed={base.words[0]})
    cmp = head.compare(z, base.z_hat, edited.z_hat, k=3)
    panel.set_comparison(cmp)
    t = panel.table
    assert t.rowCount() == len(cmp.rows) >= 3
    assert [t.horizontalHeaderItem(c).text() for c in range(5)] == ["Class", "Orig.", "Recomp.", "Edited", "Shift"]
    for i, row in enumerate(cmp.rows):
        assert panel.cell_text(i, 0) == row.name
        assert panel.cell_text(i, 1) == f"{100 * row.p_original:.1f}%"
        assert panel.cell_text(i, 3) == f"{100 * row.p_edited:.1f}%"
        assert panel.cell_text(i, 4) == shift_text(row.shift)
    signs = {panel.cell_text(i, 4)[0] for i in range(t.rowCount()) if panel.cell_text(i, 4) != "0.0 pp"}
    assert signs  # the edit moved something, with an explicit sign
    panel.resize(700, 300)
    assert not panel.grab().isNull()  # the bar delegate paints without error
    no_edit = head.compare(z, base.z_hat, None, k=3)
    panel.set_comparison(no_edit)
    assert panel.cell_text(0, 3) == "–" and panel.cell_text(0, 4) == "–"
    panel.set_comparison(None)
    assert t.rowCount() == 0


def test_k_and_class_sources(qtbot, panel, tmp_path):
    with qtbot.waitSignal(panel.kChanged) as blocker:
        panel.k_spin.setValue(8)
    assert blocker.args == [8] and panel.k() == 8
    with qtbot.waitSignal(panel.classesChanged) as blocker:
        panel.set_classes_from_text("red apple\ngreen pear")
    assert list(blocker.args[0].names) == ["red apple", "green pear"]
    f = tmp_path / "classes.txt"
    f.write_text("alpha\nbeta\ngamma\n", encoding="utf-8")
    with qtbot.waitSignal(panel.classesChanged) as blocker:
        panel.load_classes_from_file(f)
    assert len(blocker.args[0].names) == 3 and "(3)" in panel.source_label.text()
    with qtbot.assertNotEmitted(panel.classesChanged):
        assert panel.set_classes_from_text("   \n ") is None  # inline error, no crash
        assert panel.load_classes_from_file(tmp_path / "missing.txt") is None
    assert "Could not" in panel.status.text()


def test_imagenet_default(qtbot, panel):
    with qtbot.waitSignal(panel.classesChanged) as blocker:
        panel.use_imagenet()
    assert len(blocker.args[0].names) == 1000
