"""Copies of one image in the data: repeated paths, byte-identical files, and the copies that cross the split.

A test image whose bytes also occur in the training split is an image the forest may have memorised: its accuracy
there is flattered. conceptforest draws its own splits over content (``features/copies.py``), so this happens only
with a split given in a manifest or features made before that; the report then says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from conceptforest.concepts.tree_checks import names
from conceptforest.explain.finding import Finding, warning
from conceptforest.explain.report import Report

__all__ = ["SHA256_PREFIX", "Copies", "add_data_quality", "copy_warnings", "duplicate_files", "find_copies"]

SHA256_PREFIX = 12
SECTION = "Data quality"
_COLUMNS = ["path", "label", "split", "sha256"]


@dataclass(frozen=True)
class Copies:
    """The rows of a feature matrix that repeat an image; each table has ``path, label, split, sha256``."""

    split: str  # the evaluated split
    repeated_paths: pd.DataFrame  # rows whose path is listed more than once
    within_label: pd.DataFrame  # distinct paths with the same bytes under one label
    across_labels: pd.DataFrame  # the same bytes filed under different labels
    in_train: pd.DataFrame  # evaluated rows whose bytes also occur in the training split


def _shown(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(["sha256", "label", "path"], kind="stable").reset_index(drop=True)


def _ids(frame: pd.DataFrame) -> pd.DataFrame | None:
    if not {"path", "label", "sha256"} <= set(frame.columns):
        return None
    return frame.reindex(columns=_COLUMNS).astype(str)


def duplicate_files(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose bytes (``sha256``) also appear under another label, grouped by content."""
    ids = _ids(frame)
    if ids is None:
        return pd.DataFrame(columns=_COLUMNS)
    return _shown(ids[ids.groupby("sha256")["label"].transform("nunique") > 1])


def find_copies(frame: pd.DataFrame, split: str) -> Copies:
    """Every kind of copy in ``frame`` (``path, label, split, sha256`` columns), for the evaluated ``split``."""
    ids = _ids(frame)
    if ids is None:
        nothing = pd.DataFrame(columns=_COLUMNS)
        return Copies(split, nothing, nothing, nothing, nothing)
    repeated = ids[ids.duplicated("path", keep=False)]
    distinct = ids.drop_duplicates("path")
    same_label = distinct.groupby(["sha256", "label"])["path"].transform("size") > 1
    train_bytes = set(ids.loc[ids["split"] == "train", "sha256"])
    in_train = ids[(ids["split"] == split) & ids["sha256"].isin(train_bytes)] if split != "train" else ids.iloc[:0]
    return Copies(split, _shown(repeated), _shown(distinct[same_label]), duplicate_files(frame), _shown(in_train))


def copy_warnings(copies: Copies) -> list[Finding]:
    """The findings: a copy across the split first (it flatters the accuracy), then the other copies."""
    found = []
    if not copies.in_train.empty:
        found.append(
            warning(
                f"{len(copies.in_train)} image(s) of the {copies.split!r} split have a byte-identical copy in the "
                f"training split: the forest may have memorised them, so the {copies.split!r} accuracy is "
                "flattered. Give every copy of an image the same split (or drop the copies) and train again.",
                SECTION,
                images=len(copies.in_train),
            )
        )
    if not copies.across_labels.empty:
        found.append(
            warning(
                f"{len(copies.across_labels)} files are byte-identical copies filed under different labels "
                f"({copies.across_labels['sha256'].nunique()} distinct images; labels "
                f"{names(sorted(copies.across_labels['label'].unique()), 5)}).",
                SECTION,
                files=len(copies.across_labels),
            )
        )
    parts = []
    if not copies.repeated_paths.empty:
        paths = copies.repeated_paths["path"].nunique()
        parts.append(f"{len(copies.repeated_paths)} rows list {paths} path(s) more than once")
    if not copies.within_label.empty:
        contents = copies.within_label["sha256"].nunique()
        parts.append(
            f"{len(copies.within_label)} files are byte-identical copies of {contents} image(s) under one label"
        )
    if parts:
        found.append(
            warning(
                f"{' and '.join(parts)}: each copy counts again where it falls (in training, or in the metrics, "
                "whose intervals it narrows)"
                "intervals).",
                SECTION,
                rows=len(copies.repeated_paths) + len(copies.within_label),
            )
        )
    return found


def _tables(copies: Copies) -> list[tuple[pd.DataFrame, str, str, str]]:
    """(table, file name, text, caption) per kind of copy, the one that flatters the accuracy first."""
    return [
        (
            copies.in_train,
            "copies_in_train",
            "{n} image(s) of the evaluated split have a byte-identical copy in the training split: the accuracy on "
            "them is flattered.",
            "Evaluated images whose bytes also occur in the training split (sha256 prefix = same content)",
        ),
        (
            copies.across_labels,
            "duplicate_files",
            "{n} files are byte-identical copies filed under different labels. One image cannot show two labels: "
            "check these files and keep each under its right label.",
            "Byte-identical files under different labels (sha256 prefix = same content)",
        ),
        (
            copies.within_label,
            "copies_within_label",
            "{n} files are byte-identical copies under one label; each copy counts again where it falls "
            "(in training, or in the metrics).",
            "Byte-identical files under one label (sha256 prefix = same content)",
        ),
        (
            copies.repeated_paths,
            "repeated_paths",
            "{n} rows list a path that another row lists too; each repeat counts again where it falls (in "
            "training, or in the metrics).",
            "Rows whose path is listed more than once",
        ),
    ]


def add_data_quality(report: Report, copies: Copies) -> None:
    """One table per kind of copy found (nothing is added when there are none)."""
    for table, name, text, caption in _tables(copies):
        if not table.empty:
            shown = table.assign(sha256=table["sha256"].str[:SHA256_PREFIX])
            report.add_text(SECTION, text.format(n=len(table)))
            report.add_table(SECTION, name, shown, caption=caption, max_rows=100)
