"""Headless science layer: models, images, vocabularies, solvers, zero-shot and per-head analysis.

Nothing below this package may import Qt (tests/core/test_layering.py enforces it), so batch jobs,
tests and the GUI share one implementation. Heavy imports (torch, open_clip) happen inside functions.
"""
