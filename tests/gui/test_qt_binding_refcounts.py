"""Guards against a PySide6 build that drops references to None/True (6.12.0 under Python < 3.12).

Such a build aborts a long session with "Fatal Python error: none_dealloc" after a few thousand Qt calls,
long after any short test would notice. pyproject.toml excludes it; this test fails if it comes back.
"""

from __future__ import annotations

import sys

import pytest


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None and True are immortal from Python 3.12 on")
def test_void_qt_calls_do_not_drain_none_or_true(qtbot) -> None:
    from PySide6.QtWidgets import QLabel

    label = QLabel()
    qtbot.addWidget(label)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(500):
        label.setText("x")
        label.setVisible(True)
        label.setEnabled(True)
    # Small positive drift (caches) is harmless; a loss of ~one reference per call is the bug.
    assert sys.getrefcount(None) - none_before > -50
    assert sys.getrefcount(True) - true_before > -50
