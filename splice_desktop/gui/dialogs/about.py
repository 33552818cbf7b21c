"""About: versions (without importing torch just to show them), the model in use, licences and citations."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Optional

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QTextBrowser, QVBoxLayout, QWidget

CITATIONS = """\
Bhalla, Oesterling, Srinivas, Calmon, Lakkaraju. Interpreting CLIP with Sparse Linear Concept Embeddings (SpLiCE). NeurIPS 2024.
Madasu, Gandelsman, Lal, Howard. Quantifying and Enabling the Interpretability of CLIP-like Models. 2024.
Gandelsman, Efros, Steinhardt. Interpreting CLIP's Image Representation via Text-Based Decomposition. ICLR 2024.
Cherti et al. Reproducible scaling laws for contrastive language-image learning (OpenCLIP). CVPR 2023."""

LICENCES = [
    ("SpLiCE Desktop", "Apache-2.0"),
    ("open_clip", "MIT"),
    ("PyTorch", "BSD-3-Clause"),
    ("Qt / PySide6", "LGPL-3.0"),
    ("pyqtgraph", "MIT"),
    ("superqt", "BSD-3-Clause"),
    ("NumPy / SciPy", "BSD-3-Clause"),
    ("Pillow", "MIT-CMU (HPND)"),
    ("Default vocabulary (data)", "CC BY-SA 4.0, from wordfreq data; includes WordNet 3.0 lemmas "
                                  "(Copyright 2006 Princeton University); see NOTICE and vocab/SOURCES.md"),
    ("Published head labels (data)", "CLIP-InterpreT, IntelLabs/multimodal_cognitive_ai (MIT-style, Intel); "
                                     "shown as hints"),
]


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def version_rows() -> list[tuple[str, str]]:
    """Versions from package metadata; torch's runtime version only when it is already imported."""
    torch = sys.modules.get("torch")
    torch_version = getattr(torch, "__version__", None) if torch is not None else None
    return [
        ("SpLiCE Desktop", _dist_version("splice-desktop")),
        ("Python", f"{platform.python_version()} ({platform.system()} {platform.machine()})"),
        ("torch", torch_version or f"{_dist_version('torch')} (not loaded yet)"),
        ("open_clip", _dist_version("open_clip_torch")),
        ("Qt", qVersion()),
        ("PySide6", PYSIDE_VERSION),
        ("pyqtgraph", _dist_version("pyqtgraph")),
        ("numpy", _dist_version("numpy")),
    ]


def about_text(model_label: str = "none loaded", device: str = "", meaningless: bool = False) -> str:
    rows = version_rows()
    lines = ["SpLiCE Desktop: see what CLIP sees.", ""]
    lines += [f"{k}: {v}" for k, v in rows]
    lines += ["", f"Model: {model_label}" + (f" on {device}" if device else "")]
    if meaningless:
        lines.append("The tiny demo model has random weights: its concepts and predictions are meaningless.")
    lines += ["", "Licences:"] + [f"  {k}: {v}" for k, v in LICENCES]
    lines += ["", "Please cite:", CITATIONS]
    return "\n".join(lines)


class AboutDialog(QDialog):
    def __init__(self, model_label: str = "none loaded", device: str = "", meaningless: bool = False,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle("About SpLiCE Desktop")
        self.resize(620, 520)
        self.text = about_text(model_label, device, meaningless)
        layout = QVBoxLayout(self)
        title = QLabel("<h2>SpLiCE Desktop</h2>Sparse concept decompositions (SpLiCE) and per-head analyses "
                       "(CLIP-InterpreT) of CLIP embeddings.")
        title.setWordWrap(True)
        layout.addWidget(title)
        self.browser = QTextBrowser()
        self.browser.setPlainText(self.text)
        layout.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy")
        copy.setToolTip("Copy versions and citations to the clipboard (useful for bug reports)")
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text))
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
