"""Progress reporting and cooperative cancellation shared by every long-running core function.

Core code never knows about Qt: it calls ``progress(done, total, message)`` and checks a ``CancelToken``
between batches. GUI workers adapt both to signals; the CLI adapts them to a text progress bar.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from splice_desktop.core.errors import CancelledError

ProgressFn = Callable[[int, int, str], None]


class CancelToken:
    """A thread-safe flag. ``cancel()`` may be called from any thread; workers poll between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError()


def report(progress: Optional[ProgressFn], done: int, total: int, message: str = "") -> None:
    """Call ``progress`` if one was given, so call sites stay one line."""
    if progress is not None:
        progress(done, total, message)


def check(cancel: Optional[CancelToken]) -> None:
    """Raise CancelledError if ``cancel`` was set; a no-op without a token."""
    if cancel is not None:
        cancel.raise_if_cancelled()
