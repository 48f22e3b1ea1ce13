"""Copies of one image never straddle the split, and the report names every copy (issue 23, items 1, 16, 19)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conceptforest.errors import BadInputError
from conceptforest.features import load_dataset
from conceptforest.features.copies import content_groups
from tests.test_features import shape_image, write_images
from tests.test_hardening_report import _explain
from tests.test_models import made_up_matrix


def _splits_by_content(dataset_rows: list[tuple[Path, str]]) -> dict[bytes, set[str]]:
    found: dict[bytes, set[str]] = {}
    for path, split in dataset_rows:
        found.setdefault(path.read_bytes(), set()).add(split)
    return found


def test_byte_identical_files_under_one_label_land_in_one_split(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_label=6)
    for folder in root.iterdir():
        for image in sorted(folder.glob("*.png")):
            for copy in range(3):
                shutil.copyfile(image, folder / f"{image.stem} copy {copy}.png")
    dataset = load_dataset(root, seed=0)
    assert len(dataset) == 3 * 6 * 4
    by_content = _splits_by_content([(r.path, r.split) for r in dataset.records])
    assert len(by_content) == 18
    assert all(len(splits) == 1 for splits in by_content.values()), by_content.values()
    counts = dataset.counts()
    assert (counts["test"] > 0).all() and (counts["val"] > 0).all()


def test_a_manifest_repeating_each_path_keeps_every_repeat_in_one_split(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_label=8)
    rows = [(str(p.relative_to(root)), p.parent.name) for p in sorted(root.rglob("*.png"))]
    manifest = root / "manifest.csv"
    pd.DataFrame(rows * 4, columns=["path", "label"]).to_csv(manifest, index=False)
    dataset = load_dataset(manifest, seed=3)
    splits_of: dict[Path, set[str]] = {}
    for record in dataset.records:
        splits_of.setdefault(record.path, set()).add(record.split)
    assert len(splits_of) == 24 and all(len(s) == 1 for s in splits_of.values())
    assert {s for splits in splits_of.values() for s in splits} == {"train", "val", "test"}


def test_without_copies_each_row_is_its_own_group_and_the_split_is_stratified(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_label=20)
    paths = sorted(root.rglob("*.png"))
    assert content_groups(paths) == list(range(len(paths)))
    counts = load_dataset(root, seed=0).counts()
    assert counts.loc[:, "test"].tolist() == [3, 3, 3] and counts.loc[:, "val"].tolist() == [3, 3, 3]


def test_groups_follow_content_not_names(tmp_path: Path) -> None:
    first, second, same_size = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    shape_image("red disc", 0).save(first)
    shutil.copyfile(first, second)
    data = bytearray(first.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes
    same_size.write_bytes(bytes(data))
    assert content_groups([first, second, same_size, first, tmp_path / "missing.png"]) == [0, 0, 1, 0, 2]


def test_a_label_whose_images_are_all_one_picture_is_refused_by_name(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_label=6)
    label = sorted(p.name for p in root.iterdir())[0]
    images = sorted((root / label).glob("*.png"))
    for image in images[1:]:
        shutil.copyfile(images[0], image)
    with pytest.raises(BadInputError, match=rf"Label '{label}' has 6 image\(s\) \(1 distinct: copies of one image"):
        load_dataset(root)


def test_the_report_names_copies_across_the_split_and_repeats(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=120)
    frame = matrix.frame
    test_rows = np.flatnonzero(frame["split"] == "test")[:3]
    train_rows = np.flatnonzero(frame["split"] == "train")
    for test_row, train_row in zip(test_rows, train_rows[:3], strict=True):  # a copy of a training image in test
        frame.loc[test_row, ["sha256", "label"]] = frame.loc[train_row, ["sha256", "label"]].to_numpy()
    frame.loc[train_rows[10], "path"] = frame.loc[train_rows[11], "path"]  # a path listed twice
    frame.loc[train_rows[10], ["sha256", "label"]] = frame.loc[train_rows[11], ["sha256", "label"]].to_numpy()
    _explain(matrix, tmp_path)
    tables = tmp_path / "report" / "tables"
    in_train = pd.read_csv(tables / "copies_in_train.csv")
    assert len(pd.read_csv(tables / "copies_within_label.csv")) == 6  # the test copies have other paths
    assert len(in_train) == 3 and set(in_train["split"]) == {"test"}
    assert len(pd.read_csv(tables / "repeated_paths.csv")) == 2
    warnings = json.loads((tmp_path / "report" / "report.json").read_text())["warnings"]
    sentences = [f["sentence"] for f in warnings]
    assert any(
        "3 image(s) of the 'test' split have a byte-identical copy in the training split" in s for s in sentences
    )
    assert any(
        "2 rows list 1 path(s) more than once and 6 files are byte-identical copies of 3 image(s) under one" in s
        for s in sentences
    )


def test_a_run_without_copies_gets_no_data_quality_section(tmp_path: Path) -> None:
    report = _explain(made_up_matrix(n=80), tmp_path)
    assert "Data quality" not in report.section_titles
    assert not list((tmp_path / "report" / "tables").glob("copies_*"))


@pytest.mark.parametrize("target", ["/", "outside"])
def test_a_label_folder_leading_out_of_the_data_folder_is_refused(tmp_path: Path, target: str) -> None:
    root = write_images(tmp_path / "data", per_label=4)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink("/" if target == "/" else outside, root / "zebra")
    with pytest.raises(BadInputError, match=r"label folder .*zebra.* not inside the data folder") as error:
        load_dataset(root)
    assert "manifest" in (error.value.hint or "")


def test_a_label_folder_linked_inside_the_data_folder_is_read(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_label=4)
    (root / ".store").mkdir()  # hidden: not a label folder itself
    circles = sorted(root.iterdir())[-1]
    shutil.move(circles, root / ".store" / circles.name)
    os.symlink(root / ".store" / circles.name, circles)
    dataset = load_dataset(root, labels=None, val_fraction=0, test_fraction=0.25)
    assert circles.name in dataset.labels


def test_a_nul_byte_in_a_manifest_path_skips_that_row(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_label=6)
    rows = [(str(p.relative_to(root)), p.parent.name) for p in sorted(root.rglob("*.png"))]
    rows.append(("circle/bad\x00name.png", rows[0][1]))
    manifest = root / "manifest.parquet"
    pd.DataFrame(rows, columns=["path", "label"]).to_parquet(manifest)
    dataset = load_dataset(manifest)
    assert len(dataset) == 18
    (skipped,) = dataset.skipped
    assert skipped.path == "circle/bad\\x00name.png" and "NUL byte" in skipped.reason and "row 20" in skipped.reason


def test_run_and_train_say_in_the_terminal_when_test_images_are_copies_of_training_ones(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from conceptforest.cli import app

    root = write_images(tmp_path / "data", per_label=8)
    rows = pd.DataFrame(
        [(str(p), p.parent.name, "test" if i % 4 == 0 else "train") for i, p in enumerate(sorted(root.rglob("*.png")))],
        columns=["path", "label", "split"],
    )
    leaked = rows[rows["split"] == "test"].assign(split="train")  # every test image listed in train too
    manifest = tmp_path / "leaky.csv"
    pd.concat([rows, leaked]).to_csv(manifest, index=False)
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["run", str(manifest), "--llm", "none", "--domain", "shape", "--clip", "conceptforest-tiny-random"]
    ran = runner.invoke(app, [*args, "-o", str(out), "--n-estimators", "10", "--no-progress"])
    assert ran.exit_code == 0, ran.output
    expected = "6 image(s) of the 'test' split have a byte-identical copy in the training split"
    assert expected in ran.output
    trained = runner.invoke(app, ["train", str(out), "-o", str(tmp_path / "model"), "--n-estimators", "10"])
    assert trained.exit_code == 0 and expected in trained.output
