"""Dialogs of the main window: preferences, missing weights, about, skipped files."""
