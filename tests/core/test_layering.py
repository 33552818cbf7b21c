"""The science layer must stay headless: no module under splice_desktop/core may import Qt."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import splice_desktop.core

QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "superqt", "qtpy", "shiboken6")
CORE = Path(splice_desktop.core.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_core_module_imports_qt_statically() -> None:
    offenders = {
        str(p.relative_to(CORE)): sorted(_imported_roots(p) & set(QT_MODULES))
        for p in CORE.rglob("*.py")
        if _imported_roots(p) & set(QT_MODULES)
    }
    assert offenders == {}, f"core modules import Qt: {offenders}"


def test_importing_all_of_core_loads_no_qt_module() -> None:
    """Catches indirect imports too: import every core module in a fresh interpreter and inspect sys.modules."""
    modules = sorted(
        "splice_desktop.core." + ".".join(p.relative_to(CORE).with_suffix("").parts)
        for p in CORE.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing core pulled in Qt: {out.stdout.strip()}"
