"""GUI test guards, shared with tests/e2e: isolated QSettings per test, and no QThread may outlive its test.

The thread guard records every QThread started during a test (QThread.start is wrapped, like napari's
``_dangling_qthreads``) and fails the test if one is still running after pytest-qt closed the test's widgets
(a short grace period lets cooperative cancellation finish).
"""

from __future__ import annotations

import traceback
import weakref
from pathlib import Path

import pytest

SMALL_VOCAB_SIZE = 300


@pytest.fixture(autouse=True)
def _isolated_qsettings(tmp_path_factory: pytest.TempPathFactory):
    """Every test gets its own empty QSettings store (INI files in a temp folder), never the user's."""
    from PySide6.QtCore import QSettings

    from splice_desktop.gui.settings import isolate_settings

    folder = tmp_path_factory.mktemp("qsettings")
    isolate_settings(folder)
    yield folder
    QSettings().sync()


@pytest.fixture(autouse=True)
def _no_dangling_qthreads(monkeypatch: pytest.MonkeyPatch):
    from PySide6.QtCore import QThread

    started: "weakref.WeakKeyDictionary[QThread, str]" = weakref.WeakKeyDictionary()
    original = QThread.start

    def _recording_start(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started[self] = "".join(traceback.format_stack(limit=6)[:-1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", _recording_start)
    yield started
    leaked = []
    for thread, where in list(started.items()):
        try:
            running = thread.isRunning() and not thread.wait(3000)
        except RuntimeError:  # the C++ object is already gone: not running
            running = False
        if running:
            leaked.append(f"{thread.objectName() or type(thread).__name__} started at:\n{where}")
    if leaked:
        pytest.fail("QThreads left running after the test:\n" + "\n".join(leaked), pytrace=False)


def make_words(n: int = SMALL_VOCAB_SIZE, seed: int = 0) -> list[str]:
    """Deterministic pseudo-words (distinct, lowercase, 1-2 tokens) for a small concept vocabulary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syll = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "zu", "pe", "da", "gi", "ho", "ja", "bu", "fe"]
    words: list[str] = []
    seen = set()
    while len(words) < n:
        parts = rng.integers(0, len(syll), size=int(rng.integers(2, 4)))
        w = "".join(syll[i] for i in parts)
        if rng.random() < 0.2:
            w += " " + "".join(syll[i] for i in rng.integers(0, len(syll), size=2))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def wait_ready(qtbot, win, timeout: int = 120000):
    """Wait until the window's background pipeline is loaded and return its state. Checks the state rather than
    waiting for pipelineReady, so a signal emitted before the wait began is not missed."""
    qtbot.waitUntil(lambda: win.state is not None and win.loader is None, timeout=timeout)
    return win.state


@pytest.fixture(scope="session")
def small_vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "small_vocab.txt"
    path.write_text("\n".join(make_words()) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_config(small_vocab_file: Path):
    """Pipeline config for tests: tiny random model on the CPU with the small vocabulary, no image mean."""
    from splice_desktop.gui.settings import PipelineConfig

    return PipelineConfig(model_name="splice-tiny-random", pretrained=None, checkpoint=None, device="cpu",
                          vocab_path=str(small_vocab_file), vocab_order="plain")


@pytest.fixture
def make_window(qtbot, tiny_config):
    """Factory: a shown MainWindow registered with qtbot (closed - and its threads stopped - at teardown)."""
    from splice_desktop.gui.main_window import MainWindow

    def _make(config=None, autoload: bool = True, show: bool = True):
        win = MainWindow(config=config or tiny_config, autoload=autoload)
        qtbot.addWidget(win)
        if show:
            win.show()
            qtbot.waitExposed(win)
        return win

    return _make
