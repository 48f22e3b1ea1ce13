"""Which rows of a data set hold the same image: repeated paths and byte-identical files.

The split is drawn over these groups, so every copy of an image lands in one split: a copy in train and another in
test would let the model remember the test image and flatter the accuracy.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from conceptforest.cache import file_sha256
from conceptforest.features.images import DEFAULT_MAX_PIXELS, max_file_bytes


def _content_sha256(path: str, size: int) -> str | None:
    """The file's sha256 (streamed); None for a file over the image byte cap (extraction skips it unread) or one
    that cannot be read (extraction says why)."""
    if size > max_file_bytes(DEFAULT_MAX_PIXELS):
        return None
    try:
        return file_sha256(path)
    except OSError:
        return None


def content_groups(paths: Sequence[Path]) -> list[int]:
    """A group number per path: equal for a repeated path and for byte-identical files, numbered by first row.

    Only files that share their size with another file are read (copies have equal sizes), so a data set without
    copies costs one ``stat`` per distinct file; files over the image byte cap are never read (each is its own
    group). Formats of one fixed size (BMP, PPM) are hashed whole: correct, at the cost of a read.
    """
    first_row_of: dict[str, int] = {}
    distinct: list[tuple[str, int]] = []  # (real path, first row)
    for row, path in enumerate(paths):
        real = os.path.realpath(path)
        if real not in first_row_of:
            first_row_of[real] = row
            distinct.append((real, row))
    by_size: dict[int, list[str]] = defaultdict(list)
    for real, _ in distinct:
        try:
            by_size[os.stat(real).st_size].append(real)
        except OSError:
            continue  # listed as skipped by extraction; alone in its group
    same_as: dict[str, str] = {}  # real path -> the real path of the first file with its content
    for size, candidates in by_size.items():
        if len(candidates) < 2:
            continue
        first_with: dict[str, str] = {}
        for real in candidates:
            key = _content_sha256(real, size)
            if key is not None:
                same_as[real] = first_with.setdefault(key, real)
    group_of_row: dict[int, int] = {}
    groups: list[int] = []
    for path in paths:
        real = os.path.realpath(path)
        leader = first_row_of[same_as.get(real, real)]
        groups.append(group_of_row.setdefault(leader, len(group_of_row)))
    return groups
