"""Concept vocabularies: one concept per line, UTF-8, cleaned and hashed so caches key on content, not file names.

Two orderings are supported:

* ``"ascending"`` - the SpLiCE convention: lines are sorted by ascending frequency, so the most frequent concept
  is the LAST line and a vocabulary of size k is the last k concepts (the authors' ``lines[-k:]``).
* ``"plain"`` - an ordinary list, most important first; size k is the first k concepts.

Cleaning happens before the size cut, so ``size=k`` always yields k real concepts (the authors' cut of the raw
file would include blank lines such as the empty concept in ``mscoco.txt``). Duplicates keep the occurrence with
the *highest rank*: the last one in an ascending file (its most frequent position), the first one in a plain file.
The kept words stay in file order, so index i of a weight vector is ``words[i]`` as in the reference code.
"""

from __future__ import annotations

import hashlib
import numbers
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Optional

from splice_desktop.core.errors import VocabularyError

Order = Literal["ascending", "plain"]
ORDERS: tuple[str, ...] = ("ascending", "plain")

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Vocabulary:
    """An immutable, cleaned list of concepts plus what cleaning removed (the GUI shows these counts)."""

    words: tuple[str, ...]
    source: str
    sha256: str
    dropped_blank: int = 0
    dropped_duplicate: int = 0
    dropped_other: int = 0  # lines with control characters (binary junk, not concepts)
    truncated: int = 0  # clean concepts left out by the size cut
    notes: tuple[str, ...] = ()  # human-readable remarks, e.g. "size 50000 clamped to 37444"
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def __iter__(self):
        return iter(self.words)

    def index(self, word: str) -> int:
        """Row of ``word`` in the concept matrix; KeyError says which vocabulary lacks it."""
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(
                f"Concept {word!r} is not in vocabulary {self.source} ({len(self.words)} concepts)."
            ) from None

    def contains(self, word: str) -> bool:
        return word in self._index

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word in self._index

    def summary(self) -> str:
        """One line for a status bar or CLI log."""
        parts = [f"{len(self.words)} concepts from {self.source}"]
        dropped = []
        if self.dropped_blank:
            dropped.append(f"{self.dropped_blank} blank")
        if self.dropped_duplicate:
            dropped.append(f"{self.dropped_duplicate} duplicate")
        if self.dropped_other:
            dropped.append(f"{self.dropped_other} with control characters")
        if dropped:
            parts.append("dropped " + ", ".join(dropped))
        if self.truncated:
            parts.append(f"{self.truncated} beyond the size cut")
        parts.extend(self.notes)
        return "; ".join(parts)


def content_sha256(words: Iterable[str]) -> str:
    """Hash of the cleaned concepts in order (newline-joined UTF-8): the cache identity of a vocabulary."""
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


def clean_concept(line: str) -> str:
    """Strip, NFC-normalise and collapse inner whitespace, so "ice  cream" and "ice cream" are one concept."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", line)).strip()


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def decode_lines(path: Path, what: str = "Vocabulary file") -> list[str]:
    """UTF-8 lines of a text file (BOM and CRLF tolerated); VocabularyError names the first undecodable line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VocabularyError(f"{what} not found: {path}. Choose an existing text file.") from None
    except IsADirectoryError:
        raise VocabularyError(f"{path} is a folder; choose a text file with one concept per line.") from None
    except OSError as exc:
        raise VocabularyError(f"Could not read {what.lower()} {path}: {exc.strerror or exc}.") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline does not start a blank line
    lines: list[str] = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise VocabularyError(
                f"{what} {path} is not UTF-8: line {number} has byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1}. Re-save the file as UTF-8 (one concept per line)."
            ) from None
    return lines


def _clean(lines: list[str], order: str) -> tuple[list[str], int, int, int]:
    """Clean lines; returns (words in file order, blanks, duplicates, other)."""
    blank = other = 0
    cleaned: list[Optional[str]] = []
    for line in lines:
        word = clean_concept(line)
        if not word:
            blank += 1
            cleaned.append(None)
        elif _has_control(word):
            other += 1
            cleaned.append(None)
        else:
            cleaned.append(word)
    # Deduplicate in rank order (most important first) so the best-ranked occurrence survives.
    ranked = reversed(range(len(cleaned))) if order == "ascending" else range(len(cleaned))
    seen: set[str] = set()
    keep = [False] * len(cleaned)
    duplicate = 0
    for i in ranked:
        word = cleaned[i]
        if word is None:
            continue
        if word in seen:
            duplicate += 1
        else:
            seen.add(word)
            keep[i] = True
    words = [w for w, k in zip(cleaned, keep) if k and w is not None]
    return words, blank, duplicate, other


def _select(words: list[str], size: Optional[int], order: str) -> tuple[list[str], int, tuple[str, ...]]:
    if size is None or (isinstance(size, numbers.Integral) and not isinstance(size, bool) and size == -1):
        return words, 0, ()  # -1 is the authors' "whole file"
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
        raise VocabularyError(f"Vocabulary size must be a positive whole number (or empty for all); got {size!r}.")
    notes: tuple[str, ...] = ()
    if size > len(words):
        notes = (f"requested size {size} is larger than the {len(words)} concepts available; using all of them",)
        return words, 0, notes
    size = int(size)
    kept = words[-size:] if order == "ascending" else words[:size]
    return kept, len(words) - size, notes


def _build(lines: list[str], source: str, size: Optional[int], order: str) -> Vocabulary:
    if order not in ORDERS:
        raise VocabularyError(f"Unknown vocabulary order {order!r}; use one of {', '.join(ORDERS)}.")
    words, blank, duplicate, other = _clean(lines, order)
    if not words:
        raise VocabularyError(
            f"Vocabulary {source} has no concepts after removing blank lines and duplicates; "
            "it needs one concept per line."
        )
    kept, truncated, notes = _select(words, size, order)
    return Vocabulary(
        words=tuple(kept),
        source=source,
        sha256=content_sha256(kept),
        dropped_blank=blank,
        dropped_duplicate=duplicate,
        dropped_other=other,
        truncated=truncated,
        notes=notes,
    )


def load_vocabulary(path: str | Path, size: Optional[int] = None, order: Order = "ascending") -> Vocabulary:
    """Read and clean a vocabulary file.

    ``size``: None or -1 for all concepts; k > available is clamped to all with a note (not an error, so a
    GUI spin box left at 10000 still works with a small custom list). ``order``: "ascending" (SpLiCE, last k)
    or "plain" (first k). Raises VocabularyError for missing / non-UTF-8 / empty files.
    """
    path = Path(path)
    return _build(decode_lines(path), str(path), size, order)


def vocabulary_from_words(words: Iterable[str], source: str = "typed words") -> Vocabulary:
    """A vocabulary from an in-memory list (plain order), cleaned the same way as a file."""
    lines: list[str] = []
    for word in words:
        if not isinstance(word, str):
            raise VocabularyError(f"Concepts must be text; got {type(word).__name__} ({word!r}).")
        lines.extend(word.splitlines() or [""])
    return _build(lines, source, None, "plain")


def default_vocabulary_path() -> Path:
    """The project's generated vocabulary (ascending frequency), built by ``vocab/build_vocab.py``."""
    return Path(__file__).resolve().parents[1] / "data" / "default_vocab.txt"
