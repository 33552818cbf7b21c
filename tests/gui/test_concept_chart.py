"""ConceptChart with real decompositions: ordering, cap, removed/scaled rows, tooltips, clicks, exports."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from splice_desktop.core.decompose import EditState
from splice_desktop.gui.widgets.concept_chart import ConceptChart
from tests.gui.test_solve_worker import (  # noqa: F401 - shared fixtures
    analysis_bank,
    analysis_decomposer,
    image_embeddings,
)


@pytest.fixture
def z(image_embeddings):
    return next(iter(image_embeddings.values()))


@pytest.fixture
def chart(qtbot):
    c = ConceptChart(max_bars=10)
    qtbot.addWidget(c)
    c.resize(800, 500)
    return c


def test_rows_sorted_capped_with_more_label(chart, analysis_decomposer, z):
    dec = analysis_decomposer.decompose(z, 0.05 * analysis_decomposer.lambda_max(z))
    assert dec.l0 > 10
    chart.show_decomposition(dec, dec)
    rows = chart.rows()
    assert [r.word for r in rows] == list(dec.words[:10])
    assert [r.rank for r in rows] == list(range(1, 11))
    assert all(a.weight >= b.weight for a, b in zip(rows, rows[1:]))
    assert chart.hidden_count() == dec.l0 - 10
    # largest on top: the first row sits at the highest y
    assert chart.row_at_view(9.0).word == dec.words[0] and chart.row_at_view(0.0).word == dec.words[9]
    assert chart.row_at_view(4.5) is None  # between bars
    header = chart.header.text()
    assert f"l0 = <b>{dec.l0}</b>" in header and f"{dec.cosine:.3f}" in header and f"{dec.centred_cosine:.3f}" in header


def test_removed_greyed_scaled_marked_and_tooltips(chart, analysis_decomposer, z):
    base = analysis_decomposer.decompose(z, 0.2 * analysis_decomposer.lambda_max(z))
    w0, w1 = base.words[0], base.words[1]
    edited = analysis_decomposer.edit(z, base, EditState(removed=frozenset({w0}), scales={w1: 0.5}))
    chart.show_decomposition(edited, base)
    status = {r.word: r.status for r in chart.rows()}
    assert status[w0] == "removed" and status[w1] == "scaled"
    removed_row = next(r for r in chart.rows() if r.word == w0)
    assert removed_row.weight == pytest.approx(base.weights[0])  # kept at its solved weight, greyed
    tip = ConceptChart.tooltip_for(next(r for r in chart.rows() if r.word == w1))
    assert w1 in tip and "rank" in tip and "x0.5" in tip
    assert "(solved" in chart.header.text() or edited.l0 == base.l0


def test_banner_and_clear(chart, analysis_decomposer, z):
    chart.set_meaningless(True)
    assert chart.banner.isVisibleTo(chart) and "MEANINGLESS" in chart.banner.text()
    chart.set_meaningless(False)
    assert not chart.banner.isVisibleTo(chart)
    chart.show_decomposition(analysis_decomposer.decompose(z, 0.3), None)
    chart.clear("nothing")
    assert chart.rows() == [] and chart.header.text() == "nothing"
    empty = analysis_decomposer.decompose(z, 2 * analysis_decomposer.lambda_max(z))
    chart.show_decomposition(empty, empty)  # no active concept: no crash, explanatory text
    assert chart.rows() == []


def test_click_on_bar_emits_concept(qtbot, chart, analysis_decomposer, z):
    dec = analysis_decomposer.decompose(z, 0.2 * analysis_decomposer.lambda_max(z))
    chart.show()
    qtbot.waitExposed(chart)
    chart.show_decomposition(dec, dec)
    qtbot.wait(20)
    word = dec.words[2]
    pw = chart.plot_widget
    pt = pw.mapFromScene(chart.row_scene_pos(word))
    with qtbot.waitSignal(chart.conceptClicked, timeout=3000) as blocker:
        qtbot.mouseClick(pw.viewport(), Qt.MouseButton.LeftButton, pos=pt)
    assert blocker.args == [word]
    qtbot.mouseMove(pw.viewport(), pt)  # hovering a bar sets its tooltip (concept, weight, rank)
    qtbot.waitUntil(lambda: pw.toolTip().startswith(word + "\n"), timeout=3000)
    assert "rank 3" in pw.toolTip()


def test_exports(tmp_path, chart, analysis_decomposer, z):
    dec = analysis_decomposer.decompose(z, 0.2 * analysis_decomposer.lambda_max(z))
    chart.show_decomposition(dec, dec)
    png = chart.export_png(tmp_path / "c.png")
    img = QImage(str(png))
    assert not img.isNull() and img.width() >= 400
    svg = chart.export_svg(tmp_path / "c.svg")
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert dec.words[0] in svg.read_text(encoding="utf-8")


def test_follows_palette_for_dark_theme(chart, analysis_decomposer, z):
    from PySide6.QtGui import QColor, QPalette

    chart.show_decomposition(analysis_decomposer.decompose(z, 0.3), None)
    pal = QPalette(chart.palette())
    pal.setColor(QPalette.ColorRole.Base, QColor(30, 30, 30))
    pal.setColor(QPalette.ColorRole.WindowText, QColor(230, 230, 230))
    chart.setPalette(pal)
    assert chart.plot_widget.backgroundBrush().color().name() == "#1e1e1e"
    assert chart.value_labels()[0].color.name() == "#e6e6e6"  # value labels redrawn in the theme's text colour
