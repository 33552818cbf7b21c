"""SpLiCE Desktop: see what CLIP sees.

The package is layered: ``splice_desktop.core`` holds the science and never imports Qt;
``splice_desktop.gui`` holds the window and calls into core; ``splice_desktop.cli`` is the batch front end.
"""

__version__ = "0.1.0"
