"""End-to-end tests reuse the GUI guards (isolated settings, no leaked QThreads) and window fixtures."""

from tests.gui.conftest import (  # noqa: F401 - re-exported fixtures
    _isolated_qsettings, _no_dangling_qthreads, make_window, small_vocab_file, tiny_config,
)
