"""Typed errors. Every message says what failed and, where possible, how to fix it, because users see them verbatim."""

from __future__ import annotations

from pathlib import Path


class SpliceError(Exception):
    """Base class for errors the user should read (not programming errors)."""


class CancelledError(SpliceError):
    """Raised inside long work when the user pressed Cancel; callers treat it as a normal outcome."""

    def __init__(self, message: str = "Cancelled by the user.") -> None:
        super().__init__(message)


class WeightsUnavailableError(SpliceError):
    """Pretrained weights could not be loaded. The message names the model, the cause and the fix."""


class ImageLoadError(SpliceError):
    """One file could not be turned into an RGB image; batches record it and carry on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class VocabularyError(SpliceError):
    """A vocabulary file is unusable (missing, not UTF-8, empty after cleaning)."""


class ImageMeanError(SpliceError):
    """An image-mean file is unreadable or does not match the model's embedding size, or no image was readable.

    ``skipped`` lists the files that could not be read when the mean was being computed, so the caller can show
    them (they are the reason there is no mean)."""

    def __init__(self, message: str, skipped: "list[ImageLoadError] | None" = None) -> None:
        super().__init__(message)
        self.skipped: list[ImageLoadError] = list(skipped or [])
