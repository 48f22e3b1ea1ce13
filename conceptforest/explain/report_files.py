"""What a report owns in its folder, proven by its ``report.json``; removing an earlier report safely.

A report's ``report.json`` records, with its ``made_by``, the sha256 of every table, figure and tree picture it
wrote. Only files proven that way are ever removed, so a user's files (and a user's own ``report.json`` naming
them) are never touched.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from conceptforest.cache import file_sha256

__all__ = ["REPORT_FILES", "recorded_model_sha256", "remove_report_files", "retire_report"]

# the pages every save rewrites; index.html comes first so it is the first file removed
REPORT_FILES = ("index.html", "report.md", "report.json")


def remove_report_files(folder: str | Path) -> None:
    """Remove what an earlier report wrote into ``folder``: ``index.html`` first, then the files its
    ``report.json`` proves conceptforest wrote, then ``report.md`` and ``report.json``.

    A listed file is removed only when the record is conceptforest's (``made_by``) and the file still has the
    sha256 recorded for it, inside ``folder``: a user's own ``report.json``, a file edited since, or a record without
    hashes removes nothing it lists. The three pages themselves are rewritten by every save anyway.
    """
    root = Path(folder)
    owned = _owned_files(root)
    for name in (REPORT_FILES[0], *owned, *REPORT_FILES[1:]):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            (root / name).unlink()
    for parent in sorted({(root / name).parent for name in owned}, key=lambda p: len(p.parts), reverse=True):
        if parent != root:  # tables/, figures/, trees/ that held only the report's files
            with contextlib.suppress(OSError):
                parent.rmdir()


def retire_report(folder: str | Path) -> bool:
    """Remove an earlier report from ``folder`` before what it describes (a run's tree, features, model) is
    replaced, so that a run stopped before its new report never leaves the old one beside the new files.

    Returns whether a report was there."""
    root = Path(folder)
    existed = (root / "index.html").exists() or (root / "report.json").exists()
    remove_report_files(root)
    return existed


def recorded_model_sha256(folder: str | Path) -> str | None:
    """The sha256 of the model a conceptforest report in ``folder`` describes, or None (no such report)."""
    made_by = _read_record(Path(folder) / "report.json").get("made_by")
    sha256 = made_by.get("model_sha256") if isinstance(made_by, dict) else None
    return sha256 if isinstance(sha256, str) else None


def _read_record(report_json: Path) -> dict[str, Any]:
    """``report.json`` when conceptforest wrote it (its ``made_by`` says so); else an empty record."""
    try:  # a FIFO or device named report.json is never opened
        record = json.loads(report_json.read_text(encoding="utf-8")) if report_json.is_file() else None
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(record, dict) or not isinstance(made_by := record.get("made_by"), dict):
        return {}
    return record if made_by.get("program") == "conceptforest" else {}


def _owned_files(root: Path) -> list[str]:
    """The files ``root/report.json`` lists with the sha256 they still have (inside ``root``)."""
    listed = _read_record(root / "report.json").get("files")
    if not isinstance(listed, dict):
        return []
    return [
        str(name)
        for name, sha256 in listed.items()
        if isinstance(sha256, str) and _inside(root, root / str(name)) and _sha256_of(root / str(name)) == sha256
    ]


def _sha256_of(path: Path) -> str | None:
    try:  # a FIFO or device named in the record is never opened
        return file_sha256(path) if path.is_file() else None
    except OSError:
        return None


def _inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().parent.is_relative_to(root.resolve()) and not path.is_dir()
    except OSError:
        return False
