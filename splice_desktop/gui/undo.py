"""Undo commands for the analysis view.

Every user change that alters what is shown (concept removed/restored/rescaled, intervention mode, reset, lambda
move) is a QUndoCommand, so Ctrl+Z works uniformly. Commands store whole before/after values rather than deltas:
an ``EditState`` is small and immutable, so undo is a plain assignment and can never drift.

The target is any object with ``_apply_edit_state(key, EditState)`` and ``_apply_lambda(float)`` (AnalysisView).
Edit commands carry the image key, so undoing an edit made on another image restores *that* image's state.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Protocol

from PySide6.QtGui import QUndoCommand

LAMBDA_COMMAND_ID = 4101
SCALE_COMMAND_ID = 4102
SCALE_MERGE_S = 1.0


class UndoTarget(Protocol):
    def _apply_edit_state(self, key: str, state: Any) -> None: ...

    def _apply_lambda(self, lam: float) -> None: ...


class EditStateCommand(QUndoCommand):
    """Switch one image's EditState from ``old`` to ``new``; subclasses only differ by their menu text."""

    def __init__(self, target: UndoTarget, key: str, old: Any, new: Any, text: str) -> None:
        super().__init__(text)
        self._target = target
        self.key = key
        self.old = old
        self.new = new

    def redo(self) -> None:
        self._target._apply_edit_state(self.key, self.new)

    def undo(self) -> None:
        self._target._apply_edit_state(self.key, self.old)


class RemoveConceptsCommand(EditStateCommand):
    def __init__(self, target: UndoTarget, key: str, old: Any, new: Any, words: list[str]) -> None:
        super().__init__(target, key, old, new, _label("Remove", words))


class RestoreConceptsCommand(EditStateCommand):
    def __init__(self, target: UndoTarget, key: str, old: Any, new: Any, words: list[str]) -> None:
        super().__init__(target, key, old, new, _label("Restore", words))


class ScaleConceptCommand(EditStateCommand):
    """Rescale one concept. Spinbox steps on the same concept within ``SCALE_MERGE_S`` merge into one undo step."""

    def __init__(self, target: UndoTarget, key: str, old: Any, new: Any, word: str, scale: float) -> None:
        super().__init__(target, key, old, new, f"Scale '{word}' x{scale:g}")
        self.word = word
        self.stamp = time.monotonic()

    def id(self) -> int:  # noqa: A003 - Qt API name
        return SCALE_COMMAND_ID

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API name
        if not (isinstance(other, ScaleConceptCommand) and other.key == self.key and other.word == self.word
                and other.stamp - self.stamp <= SCALE_MERGE_S):
            return False
        self.new = other.new
        self.stamp = other.stamp
        self.setText(other.text())
        if self.new == self.old:
            self.setObsolete(True)
        return True


class SetModeCommand(EditStateCommand):
    def __init__(self, target: UndoTarget, key: str, old: Any, new: Any, mode: str) -> None:
        label = "zero the weight" if mode == "zero" else "re-solve without removed"
        super().__init__(target, key, old, new, f"Intervention mode: {label}")


class ResetEditsCommand(EditStateCommand):
    def __init__(self, target: UndoTarget, key: str, old: Any, new: Any) -> None:
        super().__init__(target, key, old, new, "Reset to solved state")


class LambdaCommand(QUndoCommand):
    """Move lambda from ``old`` to ``new``.

    ``gesture`` groups the commands of one user gesture (a drag, or a run of arrow-key presses): consecutive
    commands with the same non-None gesture merge, so one gesture is one undo step whatever the number of ticks.
    """

    def __init__(self, target: UndoTarget, old: float, new: float, gesture: Optional[int] = None) -> None:
        super().__init__(f"Set lambda {new:.4g}")
        self._target = target
        self.old = float(old)
        self.new = float(new)
        self.gesture = gesture

    def id(self) -> int:  # noqa: A003 - Qt API name
        return LAMBDA_COMMAND_ID

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API name
        if not isinstance(other, LambdaCommand) or self.gesture is None or other.gesture != self.gesture:
            return False
        self.new = other.new
        self.setText(f"Set lambda {self.new:.4g}")
        if self.new == self.old:
            self.setObsolete(True)  # a gesture that ended where it began leaves no step
        return True

    def redo(self) -> None:
        self._target._apply_lambda(self.new)

    def undo(self) -> None:
        self._target._apply_lambda(self.old)


def _label(verb: str, words: list[str]) -> str:
    if len(words) == 1:
        return f"{verb} '{words[0]}'"
    return f"{verb} {len(words)} concepts"
