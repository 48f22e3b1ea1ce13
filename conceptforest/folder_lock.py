"""One writer per output folder, and the temporary files a killed writer leaves behind.

:func:`folder_lock` takes an exclusive, non-blocking ``flock`` on ``.conceptforest.lock`` inside the folder, so two
conceptforest processes never write one run or report folder at once (a second one is refused with the first's
pid). The lock is re-entrant within a process (``run`` holds its folder while extraction takes it again), the
kernel releases it when a process dies, and the lock file is removed on release. :func:`remove_stale_temp_files`
removes the ``.<name>.<pid>.tmp`` files of writers that are no longer alive.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from conceptforest.errors import BadInputError

try:  # POSIX; elsewhere the folders are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "STALE_TEMP_SECONDS", "folder_lock", "remove_stale_temp_files"]

LOCK_FILE = ".conceptforest.lock"
STALE_TEMP_SECONDS = 24 * 3600  # a temporary file older than this is stale whatever its pid says

_HELD: dict[Path, int] = {}  # folder -> how many times this process holds it (the descriptor is kept below)
_FDS: dict[Path, int] = {}
_GUARD = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder`` (created when missing) for writing; yields its path.

    Raises
    ------
    BadInputError
        When another process holds the folder: the message names the folder and that process's pid.
    """
    path = Path(folder)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    with _GUARD:
        if key in _HELD:
            _HELD[key] += 1
        else:
            _FDS[key] = _acquire(key)
            _HELD[key] = 1
    try:
        yield path
    finally:
        with _GUARD:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
                _release(key, _FDS.pop(key))
        if created:  # a command refused before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                path.rmdir()


def _acquire(folder: Path) -> int:
    """An open descriptor of the folder's lock file, locked; the lock file carries our pid."""
    lock_path = folder / LOCK_FILE
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:  # pragma: no cover - Windows
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise BadInputError(
                f"{str(folder)!r} is being written by another conceptforest process (pid {holder}).",
                hint="wait for it to finish or choose another output folder.",
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:  # the holder before us removed it as we opened it
            same_file = False
        if same_file:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            return fd
        os.close(fd)  # we locked a file its holder had already removed: take the new one


def _release(folder: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(folder / LOCK_FILE)  # removed while still locked, so no one can lock this file afterwards
    os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OSError, OverflowError):
        return False
    return True


def remove_stale_temp_files(folder: str | Path, name: str, *, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove ``folder/.<name>.<pid>.tmp`` files whose writer is gone (or that are older than ``max_age``).

    The file of a live process (this one included) younger than ``max_age`` is never touched. One warning
    names what was removed; returns the removed paths.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)\.tmp")
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            match = pattern.fullmatch(path.name)
            if match is None or not path.is_file() or path.is_symlink():
                continue
            pid = int(match.group(1))
            try:
                old = time.time() - path.stat().st_mtime > max_age
            except OSError:
                continue
            if pid != os.getpid() and (old or not _pid_alive(pid)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    if removed:
        warnings.warn(
            f"Removed {len(removed)} temporary file(s) left in {str(folder)!r} by interrupted runs "
            f"(first: {removed[0].name}).",
            RuntimeWarning,
            stacklevel=2,
        )
    return removed
