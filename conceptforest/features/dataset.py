"""Labelled image sets: an ImageFolder layout or a CSV/Parquet manifest, with seeded stratified splits."""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.features.copies import content_groups
from conceptforest.features.images import IMAGE_EXTENSIONS, SkippedImage
from conceptforest.input_files import file_kind

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: str
    split: str


@dataclass
class ImageDataset:
    """Images with labels and splits; ``labels`` fixes the label order recorded in every artefact.

    ``skipped`` lists the paths that are not regular files (dangling symbolic links, FIFOs, devices, folders,
    missing files) and the files of a label folder without an image extension (hidden files aside), with the
    reason; extraction writes them into ``skipped.csv``.
    """

    source: Path
    records: list[ImageRecord]
    labels: list[str]
    split_seed: int | None = None
    notes: list[str] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> pd.DataFrame:
        """Images per label and split."""
        frame = pd.DataFrame([(r.label, r.split) for r in self.records], columns=["label", "split"])
        table = frame.groupby(["label", "split"]).size().unstack(fill_value=0)
        return table.reindex(index=self.labels, columns=[s for s in SPLITS if s in table.columns], fill_value=0)


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be read as an image, or None; never opens the file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if os.path.islink(path):
            return f"dangling symbolic link (its target cannot be reached: {exc.strerror or exc})"
        return f"cannot read the file: {exc.strerror or exc}"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file: {file_kind(mode)}"


# a row before splitting: path, label, split from the manifest (or None)
Row = tuple[Path, str, str | None]


def _not_an_image_name(path: Path) -> str:
    kind = f"extension {path.suffix!r}" if path.suffix else "no extension"
    return f"not an image file name ({kind}); image files end in {', '.join(sorted(IMAGE_EXTENSIONS))}"


def _check_inside(folder: Path, root: Path) -> None:
    """Refuse a label folder that leads out of the data folder (a link to ``/`` would walk the whole disk)."""
    target, top = folder.resolve(), root.resolve()
    if top not in target.parents:  # the root itself or anywhere outside it
        raise BadInputError(
            f"The label folder {str(folder)!r} leads to {str(target)!r}, which is not inside the data folder "
            f"{str(root)!r}; conceptforest does not walk folders outside the data it is given.",
            hint="link or copy the image files themselves into the label folder, or list the images in a CSV "
            "manifest (columns path,label).",
        )


def _image_folder(root: Path) -> tuple[list[Row], list[SkippedImage]]:
    rows: list[Row] = []
    skipped: list[SkippedImage] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        _check_inside(folder, root)
        for path in sorted(folder.rglob("*")):
            if path.is_dir() or any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue  # sub-folders are walked; hidden files (.DS_Store) are not the user's data
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(SkippedImage(str(path), _not_an_image_name(path)))
                continue
            problem = file_problem(path)
            if problem is None:
                rows.append((path, folder.name, None))
            else:
                skipped.append(SkippedImage(str(path), problem))
    return rows, skipped


def _manifest(path: Path) -> tuple[list[Row], list[SkippedImage]]:
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype=str)
    except Exception as exc:  # pandas raises many kinds for a bad file
        raise BadInputError(
            f"Cannot read the manifest {str(path)!r}: {exc}.",
            hint="give a CSV or Parquet file with columns path,label[,split].",
        ) from exc
    missing = {"path", "label"} - set(frame.columns)
    if missing:
        raise BadInputError(
            f"The manifest {str(path)!r} lacks the column(s) {sorted(missing)}.",
            hint="give columns path,label and optionally split (train/val/test).",
        )
    rows: list[Row] = []
    skipped: list[SkippedImage] = []
    for i, row in enumerate(frame.itertuples(index=False), start=2):
        image_path, label = getattr(row, "path"), getattr(row, "label")  # noqa: B009
        if not isinstance(image_path, str) or not isinstance(label, str) or not label.strip():
            raise BadInputError(
                f"Manifest {str(path)!r} row {i} has an empty path or label.", hint="fill in or delete that row."
            )
        split = getattr(row, "split", None) if "split" in frame.columns else None
        if split is not None and (not isinstance(split, str) or split not in SPLITS):
            raise BadInputError(
                f"Manifest {str(path)!r} row {i} has split {split!r}.",
                hint=f"use one of {list(SPLITS)} or leave the split column out.",
            )
        if "\x00" in image_path:
            shown = image_path.replace("\x00", "\\x00")
            skipped.append(SkippedImage(shown, f"manifest row {i}: the path holds a NUL byte, which no file name can"))
            continue
        resolved = Path(image_path) if Path(image_path).is_absolute() else path.parent / image_path
        problem = file_problem(resolved)  # a FIFO or a device would hang the read: refuse it from its mode
        if problem is None:
            rows.append((resolved, label.strip(), split))
        else:
            skipped.append(SkippedImage(str(resolved), problem))
    return rows, skipped


def _assign_splits(
    labels_of: list[str],
    groups: list[int],
    fractions: tuple[float, float],
    seed: int,
    label_order: list[str],
) -> list[str]:
    """Seeded, stratified train/val/test assignment of whole content groups (every copy of an image in one split).

    A group counts for the label of its first row; every split that has a fraction gets ≥1 group per label. With
    no copies each group is one row, and the draw is the same as splitting rows.
    """
    val_fraction, test_fraction = fractions
    rng = np.random.default_rng(seed)
    units_of: dict[str, list[int]] = defaultdict(list)
    seen: set[int] = set()
    for group, label in zip(groups, labels_of, strict=True):
        if group not in seen:
            seen.add(group)
            units_of[label].append(group)
    group_split: dict[int, str] = {}
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    for label in label_order:
        units = units_of[label]
        if len(units) < needed:
            _too_few_distinct(label, labels_of.count(label), len(units), needed, fractions)
        order = rng.permutation(units)
        n_test = max(1, round(len(order) * test_fraction)) if test_fraction > 0 else 0
        n_val = max(1, round(len(order) * val_fraction)) if val_fraction > 0 else 0
        n_test = min(n_test, len(order) - 1 - (n_val > 0))
        n_val = min(n_val, len(order) - 1 - n_test)
        for position, group in enumerate(order):
            group_split[int(group)] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    return [group_split[group] for group in groups]


def _too_few_distinct(label: str, images: int, distinct: int, needed: int, fractions: tuple[float, float]) -> NoReturn:
    copies = "" if images == distinct else f" ({distinct} distinct: copies of one image stay in one split)"
    if distinct == 0:
        copies = " (every one a byte-identical copy of an image filed under another label)"
    raise BadInputError(
        f"Label {label!r} has {images} image(s){copies}; a train/val/test split with fractions "
        f"{fractions[0]:g}/{fractions[1]:g} needs at least {needed} distinct images.",
        hint="add images of that label, drop it, or set --val-fraction/--test-fraction to 0.",
    )


def load_dataset(
    source: str | Path,
    *,
    labels: Sequence[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> ImageDataset:
    """Read an image folder (``root/<label>/*``) or a manifest (CSV/Parquet with ``path,label[,split]``).

    ``labels`` fixes the label order (e.g. the tree's); by default folder names or manifest labels, sorted.
    A split given in the manifest is kept; otherwise splits are stratified and seeded.
    """
    source = Path(source)
    if not source.exists():
        raise BadInputError(
            f"Image source {str(source)!r} does not exist.",
            hint="give a folder of label sub-folders, or a CSV/Parquet manifest.",
        )
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise BadInputError(
            f"Split fractions val={val_fraction:g}, test={test_fraction:g} are not valid.",
            hint="use fractions in [0, 1) that sum to less than 1.",
        )
    if not source.is_dir() and (problem := file_problem(source)) is not None:
        raise BadInputError(
            f"The manifest {str(source)!r} cannot be used: {problem}.",
            hint="give a folder of label sub-folders, or a CSV/Parquet manifest file.",
        )
    rows, skipped = _image_folder(source) if source.is_dir() else _manifest(source)
    if not rows:
        listed = f" ({len(skipped)} path(s) are not regular files, e.g. {skipped[0].path!r})" if skipped else ""
        raise BadInputError(
            f"No images found in {str(source)!r}{listed}.",
            hint=f"put images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in one sub-folder per label.",
        )
    found = sorted({label for _, label, _ in rows})
    order = list(labels) if labels is not None else found
    unknown = [label for label in found if label not in order]
    if unknown:
        raise BadInputError(
            f"The images have label(s) {unknown} that are not in the label list {order}.",
            hint="add them to the concept tree (concepts generate --extend) or remove those images.",
        )
    present = [label for label in order if label in found]
    if len(present) < 2:
        raise BadInputError(
            f"{str(source)!r} has {len(present)} label(s) with images; classification needs at least 2.",
            hint="add a sub-folder of images for each label.",
        )
    notes = [f"label {label!r} has no images" for label in order if label not in found]
    given = [split for _, _, split in rows]
    if all(split is not None for split in given):
        splits = [str(s) for s in given]
        seed_used: int | None = None
    elif val_fraction == 0 and test_fraction == 0:  # no split is drawn: nothing to group
        splits, seed_used = ["train"] * len(rows), None
    else:
        groups = content_groups([path for path, _, _ in rows])
        labels_of = [label for _, label, _ in rows]
        splits = _assign_splits(labels_of, groups, (val_fraction, test_fraction), seed, present)
        seed_used = seed
    records = [ImageRecord(path, label, split) for (path, label, _), split in zip(rows, splits, strict=True)]
    return ImageDataset(
        source=source, records=records, labels=present, split_seed=seed_used, notes=notes, skipped=skipped
    )


def check_labels_match(dataset: ImageDataset, tree: ConceptTree) -> None:
    """Refuse data labels missing from the tree; tree labels without images are allowed only if listed."""
    missing_in_tree = [label for label in dataset.labels if label not in tree.labels]
    if missing_in_tree:
        raise BadInputError(
            f"Label(s) {missing_in_tree} have images but are not in the concept tree (tree labels: {tree.labels}).",
            hint="extend the tree: conceptforest concepts generate --extend tree.json --labels labels.txt.",
        )
    missing_in_data = [label for label in tree.labels if label not in dataset.labels]
    if missing_in_data:
        raise BadInputError(
            f"Tree label(s) {missing_in_data} have no images in {str(dataset.source)!r}.",
            hint="add images for them, or remove them from the tree's labels.",
        )
