"""ImageListModel batch updates: what the main window relies on when encoder results stream in."""

from __future__ import annotations

from PySide6.QtCore import Qt

from splice_desktop.gui.widgets.image_list import ENCODED, FAILED, PENDING, ImageListModel


def test_status_updates_are_batched_per_run_of_rows(qtbot):
    model = ImageListModel()
    keys = [f"/nowhere/img{i:02d}.jpg" for i in range(20)]
    assert model.add_paths(keys, resolved=True) == keys
    assert model.add_paths(keys[:3], resolved=True) == []  # duplicates ignored
    signals: list[tuple[int, int, list]] = []
    model.dataChanged.connect(lambda a, b, roles: signals.append((a.row(), b.row(), list(roles))))
    model.set_status_many(keys[:12], ENCODED)
    assert [(a, b) for a, b, _ in signals] == [(0, 11)]  # one signal for a run of adjacent rows
    assert ImageListModel.StatusRole in signals[0][2]
    signals.clear()
    model.set_status_many([keys[15], keys[13], keys[14], keys[18]], FAILED, "unreadable")
    assert [(a, b) for a, b, _ in signals] == [(13, 15), (18, 18)]
    assert model.paths(ENCODED) == keys[:12]
    assert model.paths(FAILED) == [keys[13], keys[14], keys[15], keys[18]]
    assert "unreadable" in model.index(18).data(Qt.ItemDataRole.ToolTipRole)
    assert model.status(keys[12]) == PENDING
