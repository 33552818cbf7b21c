"""Light and dark themes as explicit Fusion palettes.

Qt's own colour-scheme switch does nothing under the offscreen/Xvfb platforms (and follows the desktop, not the
user's choice), so the app owns its palettes: they render identically everywhere and tests can check them.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("light", "dark")

# Colours shared by widgets that draw their own accents (status labels, warnings).
WARNING_RED = {"light": "#b00020", "dark": "#ff6b6b"}


def _palette(name: str) -> QPalette:
    p = QPalette()
    R = QPalette.ColorRole
    G = QPalette.ColorGroup
    if name == "dark":
        window, base, alt, text = "#2b2d30", "#1e1f22", "#2f3136", "#e6e6e6"
        button, highlight, link, disabled = "#3a3d41", "#3d7bd9", "#6ea8ff", "#7f8287"
        tooltip_bg, tooltip_fg, mid, dark, light = "#3a3d41", "#f0f0f0", "#44474c", "#18191b", "#55585d"
    else:
        window, base, alt, text = "#f3f3f3", "#ffffff", "#f6f7f9", "#1b1b1b"
        button, highlight, link, disabled = "#e8e8e8", "#2f6fd6", "#1a56c4", "#9a9a9a"
        tooltip_bg, tooltip_fg, mid, dark, light = "#ffffe8", "#1b1b1b", "#c8c8c8", "#a0a0a0", "#ffffff"
    p.setColor(R.Window, QColor(window))
    p.setColor(R.WindowText, QColor(text))
    p.setColor(R.Base, QColor(base))
    p.setColor(R.AlternateBase, QColor(alt))
    p.setColor(R.ToolTipBase, QColor(tooltip_bg))
    p.setColor(R.ToolTipText, QColor(tooltip_fg))
    p.setColor(R.PlaceholderText, QColor(disabled))
    p.setColor(R.Text, QColor(text))
    p.setColor(R.Button, QColor(button))
    p.setColor(R.ButtonText, QColor(text))
    p.setColor(R.BrightText, QColor("#ff5555"))
    p.setColor(R.Highlight, QColor(highlight))
    p.setColor(R.HighlightedText, QColor("#ffffff"))
    p.setColor(R.Link, QColor(link))
    p.setColor(R.Mid, QColor(mid))
    p.setColor(R.Dark, QColor(dark))
    p.setColor(R.Light, QColor(light))
    p.setColor(R.Midlight, QColor(mid))
    p.setColor(R.Shadow, QColor("#000000"))
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(G.Disabled, role, QColor(disabled))
    return p


class ThemeManager(QObject):
    """Applies a palette to the QApplication and tells widgets (pyqtgraph plots) to follow."""

    themeChanged = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._name = "light"

    @property
    def name(self) -> str:
        return self._name

    def apply(self, name: str) -> None:
        name = name if name in THEMES else "light"
        apply_theme(name)
        self._name = name
        self.themeChanged.emit(name)


def apply_theme(name: str) -> None:
    """Fusion style + our palette; also sets pyqtgraph's defaults if pyqtgraph is already imported."""
    import sys

    app = QApplication.instance()
    if app is None:
        return
    if app.style() is None or app.style().name().lower() != "fusion":  # re-creating the style costs ~20 ms
        app.setStyle("Fusion")
    app.setPalette(_palette(name))
    pg = sys.modules.get("pyqtgraph")
    if pg is not None:  # only if already imported: never pay for pyqtgraph at startup just for a theme
        dark = name == "dark"
        pg.setConfigOption("background", "#1e1f22" if dark else "w")
        pg.setConfigOption("foreground", "#e6e6e6" if dark else "k")


def warning_color(name: str) -> str:
    return WARNING_RED.get(name, WARNING_RED["light"])
