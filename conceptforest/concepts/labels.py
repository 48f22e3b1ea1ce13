"""Label lists: read from a file and checked before any LLM request is paid for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from conceptforest.concepts.tree import clean_label, normalize_text
from conceptforest.defaults import LABELS_HINT
from conceptforest.errors import BadInputError
from conceptforest.input_files import read_bounded_text

_DUPLICATE_HINT = "keep one of each: labels are compared ignoring case and extra spaces."


def _duplicates(labels: Sequence[str], places: Sequence[str]) -> list[str]:
    """``'a' (line 1) and 'A' (line 3)`` for each group of labels that are the same after normalisation."""
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(normalize_text(label), []).append(index)
    return [
        " and ".join(f"{labels[i]!r}{places[i]}" for i in indexes) for indexes in groups.values() if len(indexes) > 1
    ]


def check_labels(labels: Sequence[str], *, minimum: int = 0, what: str = "labels") -> list[str]:
    """The labels without control characters and with single spaces, checked before any request.

    Raises
    ------
    BadInputError
        When a label is empty or not a string, two labels are the same after normalisation (case, spaces), or
        there are fewer than ``minimum``.
    """
    if isinstance(labels, str):
        labels = [labels]
    cleaned: list[str] = []
    for number, label in enumerate(labels, 1):
        text = clean_label(label) if isinstance(label, str) else ""
        if not text:
            raise BadInputError(
                f"Label {number} of {len(labels)} in the {what} is empty ({label!r}).",
                hint="remove the empty entry, or give the label a name.",
            )
        cleaned.append(text)
    repeats = _duplicates(cleaned, [""] * len(cleaned))
    if repeats:
        raise BadInputError(f"The {what} repeat {'; '.join(repeats)}.", hint=_DUPLICATE_HINT)
    if len(cleaned) < minimum:
        raise BadInputError(
            f"A concept tree needs at least {minimum} labels; got {len(cleaned)} ({cleaned}).",
            hint="list one label per line in the labels file.",
        )
    return cleaned


def read_labels(text: str) -> list[str]:
    """Labels from a text file's contents: one per line; blank lines and ``#`` comments ignored.

    A JSON list of strings is accepted too. Repeated labels (ignoring case and spaces) raise
    :class:`BadInputError` naming their lines.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError:
            loaded = None
        if isinstance(loaded, list) and all(isinstance(x, str) for x in loaded):
            entries = [(f" (entry {i})", clean_label(x)) for i, x in enumerate(loaded, 1)]
            return _unique([(place, label) for place, label in entries if label])
    lines = [(f" (line {i})", clean_label(line.split("#", 1)[0])) for i, line in enumerate(text.splitlines(), 1)]
    return _unique([(place, label) for place, label in lines if label])


def read_labels_file(path: str | Path) -> list[str]:
    """The labels of a ``--labels`` file (see :func:`read_labels`), read as a bounded regular file.

    Raises
    ------
    BadInputError
        The file is missing, not a regular file (a FIFO or a device is never read), over
        :data:`~conceptforest.input_files.MAX_TEXT_FILE_BYTES`, not UTF-8, or repeats a label.
    """
    return read_labels(read_bounded_text(path, "labels file", LABELS_HINT))


def _unique(entries: list[tuple[str, str]]) -> list[str]:
    labels = [label for _, label in entries]
    repeats = _duplicates(labels, [place for place, _ in entries])
    if repeats:
        raise BadInputError(f"The labels file repeats {'; '.join(repeats)}.", hint=_DUPLICATE_HINT)
    return labels
