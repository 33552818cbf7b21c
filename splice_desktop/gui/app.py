"""Application entry: QApplication, identity, theme, main window. Shows the window before any heavy import.

torch and open_clip are imported only by the background loader (gui.workers), so the time to a visible window
is close to that of an empty Qt window (benchmarks/startup.py measures the ratio).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from splice_desktop.gui.settings import AppSettings, configure_identity
from splice_desktop.gui.theme import ThemeManager

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def app_icon() -> QIcon:
    """The app icon from resources/ (a source checkout) or the package data; empty icon when absent."""
    for candidate in (RESOURCES / "splice-desktop.svg",
                      Path(__file__).resolve().parents[1] / "data" / "splice-desktop.svg"):
        if candidate.is_file():
            return QIcon(str(candidate))
    return QIcon()


# Qt's own command-line options that take a value (passed through to QApplication, never taken as image paths).
QT_VALUE_OPTIONS = frozenset({
    "-style", "-stylesheet", "-platform", "-platformpluginpath", "-platformtheme", "-plugin", "-qwindowgeometry",
    "-geometry", "-qwindowtitle", "-qwindowicon", "-session", "-display", "-name", "-title", "-font", "-fn",
    "-bgcolor", "-fgcolor", "-btn", "-visual",
})


def _split_qt_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate Qt's value-taking options (``-style fusion``) from ours, so their values are not read as paths."""
    ours: list[str] = []
    qt: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.split("=", 1)[0] in QT_VALUE_OPTIONS:
            qt.append(arg)
            if "=" not in arg and i + 1 < len(args):
                qt.append(args[i + 1])
                i += 1
        else:
            ours.append(arg)
        i += 1
    return ours, qt


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="splice-desktop", description="SpLiCE Desktop: see what CLIP sees.")
    parser.add_argument("paths", nargs="*", help="images or folders to open")
    parser.add_argument("--tiny", action="store_true",
                        help="use the tiny random demo model for this run (meaningless results; not saved)")
    parser.add_argument("--theme", choices=("light", "dark"), help="theme for this run (also remembered)")
    parser.add_argument("--smoke", type=int, metavar="MS", help="quit after MS milliseconds (smoke test)")
    parser.add_argument("--startup-probe", action="store_true", help=argparse.SUPPRESS)
    ours, qt = _split_qt_options(argv)
    args, unknown = parser.parse_known_args(ours)
    return args, qt + unknown


class _StartupProbe(QObject):
    """Prints SHOWN on the window's first paint, PANELS when the deferred panels exist, then exits.

    Used by benchmarks/startup.py only; the exit skips orderly teardown of the loader thread on purpose.
    """

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        window.panelsReady.connect(self._panels)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Paint:
            obj.removeEventFilter(self)
            import time

            print(f"SHOWN {time.process_time():.4f}", flush=True)  # CPU seconds of this process so far
        return False

    def _panels(self) -> None:
        print("PANELS", flush=True)
        import os

        os._exit(0)


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Start the GUI. ``argv`` excludes the program name (sys.argv[0] is dropped when passed through)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == sys.argv[0]:
        args_in = args_in[1:]
    args, qt_args = parse_args(args_in)

    app = QApplication.instance() or QApplication([sys.argv[0] or "splice-desktop", *qt_args])
    configure_identity()
    app.setApplicationDisplayName("SpLiCE Desktop")
    app.setDesktopFileName("splice-desktop")

    from splice_desktop.gui.main_window import MainWindow

    settings = AppSettings()
    theme = ThemeManager()
    if args.theme:
        settings.set_theme(args.theme)
    theme.apply(settings.theme())
    config = settings.pipeline()
    if args.tiny:
        config = config.with_tiny_model()
    window = MainWindow(settings=settings, theme=theme, config=config, lazy_panels=True)
    if args.startup_probe:
        probe = _StartupProbe(window)
        window.installEventFilter(probe)
    window.show()
    QTimer.singleShot(0, lambda: app.setWindowIcon(app_icon()))  # loads the SVG plugin: after the first paint
    if args.paths:
        window.add_paths(args.paths)
    if args.smoke:
        QTimer.singleShot(int(args.smoke), window.close)
    return int(app.exec())


def main() -> int:
    return run(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
