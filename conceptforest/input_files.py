"""Reading small input files (label lists and the like): regular files only, bounded in size, never waited on.

A path given for a small text file may be a FIFO (reading it waits for a writer forever), a device (``/dev/zero``
never ends) or a huge file. :func:`read_bounded_bytes` opens it non-blocking, checks with ``fstat`` that it is a
regular file no larger than the limit, and reads at most one byte past the limit, so none of those is read whole.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conceptforest.errors import BadInputError

__all__ = ["MAX_TEXT_FILE_BYTES", "file_kind", "read_bounded_bytes", "read_bounded_text"]

MAX_TEXT_FILE_BYTES = 16 * 2**20
"""The largest small text file read (16 MiB): 100,000 labels of 100 characters take 10 MB."""

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, from its ``st_mode``: ``"a FIFO (named pipe)"``, ``"a folder"``..."""
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def read_bounded_bytes(path: str | Path, what: str, hint: str, *, max_bytes: int = MAX_TEXT_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them.

    Raises
    ------
    BadInputError
        Naming ``what`` and the path: it does not exist or cannot be opened, is not a regular file (FIFO,
        device, socket, folder), or holds more than ``max_bytes`` bytes (by its size, or by what was read when
        it grew after the check). ``hint`` is the fix offered.
    """
    name = f"The {what} {str(path)!r}"
    try:
        # non-blocking: a FIFO opens at once instead of waiting for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise BadInputError(f"{name} does not exist.", hint=hint) from exc
    except OSError as exc:
        raise BadInputError(f"{name} could not be opened: {exc.strerror or exc}.", hint=hint) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BadInputError(f"{name} is not a regular file ({file_kind(info.st_mode)}).", hint=hint)
        size = info.st_size
        if size <= max_bytes:
            try:
                data = handle.read(max_bytes + 1)
            except OSError as exc:
                raise BadInputError(f"{name} could not be read: {exc.strerror or exc}.", hint=hint) from exc
            if len(data) <= max_bytes:
                return data
            size = len(data)
    raise BadInputError(
        f"{name} is {size:,} bytes, over the limit of {max_bytes:,} bytes for this kind of file.",
        hint=f"check that this is the right file; {hint}",
    )


def read_bounded_text(path: str | Path, what: str, hint: str, *, max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """The UTF-8 text (a byte-order mark dropped) of a regular file of at most ``max_bytes`` bytes.

    Raises
    ------
    BadInputError
        As :func:`read_bounded_bytes`, or when the file is not UTF-8 text.
    """
    data = read_bounded_bytes(path, what, hint, max_bytes=max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"The {what} {str(path)!r} is not UTF-8 text (byte {exc.start} is {data[exc.start : exc.start + 1]!r}).",
            hint=f"save it with UTF-8 encoding; {hint}",
        ) from exc
