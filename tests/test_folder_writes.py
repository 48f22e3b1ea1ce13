"""Issue 23, items 2-8: output folders never mix two runs, and every CSV the tool writes is spreadsheet-safe.

Kills are simulated by raising KeyboardInterrupt inside the write (what a signal does to Python); concurrent
writers are real second processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conceptforest.cli import app
from conceptforest.explain.report import Report
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.folder_lock import LOCK_FILE

runner = CliRunner()
LABELS = ["red disc", "blue tile"]
HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Images, the tiny backbone and one complete run folder (copied by each test that changes it)."""
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.synthetic import make_shape_images

    root = tmp_path_factory.mktemp("folders")
    made = {
        "images": make_shape_images(root / "images", per_label=8, labels=LABELS),
        "tiny": save_tiny_backbone(root / "tiny"),
        "cache": root / "cache",
        "run": root / "run",
    }
    result = runner.invoke(app, run_args(made, made["run"], "--domain", "toy shape", "--llm", "none"))
    assert result.exit_code == 0, result.output
    return made


def run_args(made: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        *("run", str(made["images"]), "-o", str(out), "--clip", f"local-dir:{made['tiny']}"),
        *("--n-estimators", "10", "--cache-dir", str(made["cache"]), "--no-progress", *extra),
    ]


def copy_run(made: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(made["run"], tmp_path / "run"))


def zeroshot_args(made: dict[str, Path], images: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("zeroshot", str(images), "--clip", f"local-dir:{made['tiny']}", "-o", str(out)),
        *("--cache-dir", str(made["cache"]), "--no-progress", *extra),
    ]


def killed(*_: object, **__: object) -> None:
    raise KeyboardInterrupt


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Second processes that hold a folder's lock (see :func:`hold`); closed after the test."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=60)


HOLD = """
import sys
from conceptforest.folder_lock import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def hold(children: list[subprocess.Popen[str]], folder: Path) -> int:
    """Another process takes ``folder``'s lock and keeps it until the test ends; returns its pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    children.append(child)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child.pid


def files_in(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` and its bytes, but for the lock file of a process holding it."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE}


# item 2: a zero-shot run killed between predictions.csv and report/


def test_zeroshot_killed_before_its_report_leaves_no_old_report_beside_new_predictions(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "zs"
    first = runner.invoke(app, zeroshot_args(made, made["images"], out, "--method", "clip"))
    assert first.exit_code == 0, first.output
    assert json.loads((out / "report" / "report.json").read_text())["made_by"]["method"] == "clip"
    monkeypatch.setattr(Report, "save", killed)
    second = runner.invoke(app, zeroshot_args(made, made["images"], out, "--method", "waffle"))
    assert second.exit_code == 130, second.output
    assert not (out / "report" / "index.html").exists()
    assert not (out / "report" / "report.json").exists()


# item 3: a run killed in its report stage; explain notices a report of another model


def test_run_killed_in_its_report_stage_leaves_no_old_report_beside_the_new_model(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = copy_run(made, tmp_path)
    old_model = (run / "model" / "model.skops").read_bytes()
    monkeypatch.setattr("conceptforest.pipeline.explain_model", killed)
    again = runner.invoke(app, run_args(made, run, "--n-estimators", "12"))
    assert again.exit_code == 130, again.output
    assert (run / "model" / "model.skops").read_bytes() != old_model  # the model it described was replaced
    assert not (run / "report" / "index.html").exists() and not (run / "report" / "report.json").exists()
    assert not (run / "report" / "tables").exists() or not any((run / "report" / "tables").iterdir())


def test_explain_notices_a_report_of_another_model_beside_the_model(made: dict[str, Path], tmp_path: Path) -> None:
    run = copy_run(made, tmp_path)
    retrained = runner.invoke(app, ["train", str(run), "-o", str(run / "model"), "--n-estimators", "7"])
    assert retrained.exit_code == 0, retrained.output
    new_sha = json.loads((run / "model" / "manifest.json").read_text())["model_sha256"]
    old_sha = json.loads((run / "report" / "report.json").read_text())["made_by"]["model_sha256"]
    assert new_sha != old_sha
    result = runner.invoke(
        app, ["explain", str(run / "model"), str(run), "-o", str(tmp_path / "other"), "--no-baselines"]
    )
    assert result.exit_code == 0, result.output
    assert f"Warning: the report in {str(run / 'report')!r} describes another model" in result.output
    assert old_sha[:12] in result.output and new_sha[:12] in result.output


# item 4: two explain runs into one folder


PAUSED_EXPLAIN = """
import sys
from conceptforest.cli import main
from conceptforest.explain.report import Report
real = Report.save
def paused(self, folder):
    print("saving", flush=True)
    sys.stdin.read()
    return real(self, folder)
Report.save = paused
sys.exit(main(sys.argv[1:]))
"""


def test_two_explain_runs_into_one_folder_never_mix(made: dict[str, Path], tmp_path: Path) -> None:
    run, out = made["run"], tmp_path / "report"
    common = [str(run / "model"), str(run), "-o", str(out), "--no-baselines", "--repeats", "2"]
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED_EXPLAIN, "explain", *common, "--split", "train"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert first.stdout is not None and first.stdin is not None
    while (line := first.stdout.readline()) and line.strip() != "saving":
        pass
    assert line.strip() == "saving", "the first explain ended before saving"
    second = runner.invoke(app, ["explain", *common, "--split", "test"])
    first.stdin.close()
    assert first.wait(timeout=120) == 0, first.stdout.read()
    assert second.exit_code == 2, second.output
    assert f"{str(out)!r} is being written by another conceptforest process (pid {first.pid})" in second.output
    report = json.loads((out / "report.json").read_text())
    assert report["made_by"]["split"] == "train"
    for name, sha256 in report["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha256, name


def test_every_writing_verb_refuses_a_folder_another_process_writes(
    made: dict[str, Path], tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    run = copy_run(made, tmp_path)
    before = files_in(run)
    pid = hold(holder, run)
    tree = str(run / "tree.json")
    clip = ("--clip", f"local-dir:{made['tiny']}", "--cache-dir", str(made["cache"]), "--no-progress")
    report_pid = hold(holder, tmp_path / "report")
    model_pid = hold(holder, run / "model")
    for args, folder, owner in (
        (run_args(made, run), run, pid),
        (["train", str(run), "-o", str(run / "model"), "--n-estimators", "5"], run / "model", model_pid),
        (["features", "extract", str(made["images"]), tree, "-o", str(run), *clip], run, pid),
        (zeroshot_args(made, made["images"], run), run, pid),
        (["explain", str(run / "model"), str(run), "-o", str(tmp_path / "report"), "--no-baselines"], None, 0),
    ):
        folder, owner = (folder, owner) if folder is not None else (tmp_path / "report", report_pid)
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args[0], result.output)
        assert f"{str(folder)!r} is being written by another conceptforest process (pid {owner})" in result.output
        assert "Fix: wait for it to finish or choose another output folder" in result.output
    assert files_in(run) == before
    assert not (tmp_path / "report" / "index.html").exists()


# item 5: the sidecar vouches for the bytes this extraction wrote


def test_the_sidecar_binds_the_table_this_extraction_wrote_not_one_that_replaced_it(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = copy_run(made, tmp_path)
    other = (run / "features.parquet").read_bytes()
    frame = pd.read_parquet(run / "features.parquet")
    frame.iloc[:4].to_parquet(tmp_path / "fewer.parquet")  # another extraction's table: the same columns
    fewer = (tmp_path / "fewer.parquet").read_bytes()
    real = os.replace

    def racing(source: str | Path, target: str | Path) -> None:
        real(source, target)
        if Path(target).name == "features.parquet":  # the other process renames its table in just after ours
            Path(target).write_bytes(fewer)

    monkeypatch.setattr(os, "replace", racing)
    tree = str(run / "tree.json")
    clip = ("--clip", f"local-dir:{made['tiny']}", "--cache-dir", str(made["cache"]), "--no-progress")
    result = runner.invoke(app, ["features", "extract", str(made["images"]), tree, "-o", str(run), *clip])
    monkeypatch.setattr(os, "replace", real)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((run / "concepts.json").read_text())
    assert sidecar["features_sha256"] == hashlib.sha256(other).hexdigest()  # what it wrote, not what is there
    trained = runner.invoke(app, ["train", str(run), "-o", str(tmp_path / "model"), "--n-estimators", "5"])
    assert trained.exit_code == 2 and "do not belong together" in trained.output


# item 6: only files conceptforest wrote, and that are unchanged, are removed


def test_a_report_removes_only_files_its_own_record_proves_it_wrote(tmp_path: Path) -> None:
    (tmp_path / "mine.csv").write_text("x\n1\n")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "notes.csv").write_text("mine\n")
    users_record = {"files": {"mine.csv": "0", "tables/notes.csv": "0"}}  # the user's own report.json
    (tmp_path / "report.json").write_text(json.dumps(users_record))
    Report("first").add_table("A", "ours", pd.DataFrame({"a": [1]})).add_table("A", "edited", pd.DataFrame()).save(
        tmp_path
    )
    assert (tmp_path / "mine.csv").read_text() == "x\n1\n" and (tmp_path / "tables" / "notes.csv").exists()
    (tmp_path / "tables" / "edited.csv").write_text("the user's edit\n")  # no longer what the report wrote
    Report("second").add_table("A", "new", pd.DataFrame({"a": [2]})).save(tmp_path)
    assert not (tmp_path / "tables" / "ours.csv").exists()
    assert (tmp_path / "tables" / "edited.csv").read_text() == "the user's edit\n"
    assert (tmp_path / "mine.csv").exists() and (tmp_path / "tables" / "notes.csv").exists()


# item 7: temporary tables of killed extractions are cleaned


def test_stale_temporary_tables_are_removed_and_live_ones_kept(made: dict[str, Path], tmp_path: Path) -> None:
    run = copy_run(made, tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    live = alive.pid
    dead_file = run / f".features.parquet.{dead_pid}.tmp"
    live_file = run / f".features.parquet.{live}.tmp"
    old_file = run / f".features.parquet.{os.getppid()}.tmp"
    for path in (dead_file, live_file, old_file):
        path.write_bytes(b"PAR1" + b"\0" * 1000)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_file, (two_days_ago, two_days_ago))
    tree = str(run / "tree.json")
    clip = ("--clip", f"local-dir:{made['tiny']}", "--cache-dir", str(made["cache"]), "--no-progress")
    with pytest.warns(RuntimeWarning, match=r"Removed 2 temporary file\(s\) left in .* by interrupted runs"):
        result = runner.invoke(app, ["features", "extract", str(made["images"]), tree, "-o", str(run), *clip])
    alive.communicate()
    assert result.exit_code == 0, result.output
    assert not dead_file.exists() and not old_file.exists()
    assert live_file.exists()


# item 8: every CSV the tool writes is neutralised as the report's tables are


def hostile_manifest(made: dict[str, Path], tmp_path: Path) -> Path:
    rows = []
    for label, hostile in zip(LABELS, HOSTILE, strict=True):
        for image in sorted((made["images"] / label).iterdir()):
            rows.append({"path": str(image), "label": hostile})
    manifest = tmp_path / "hostile.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def test_zeroshot_predictions_neutralise_hostile_labels(made: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, zeroshot_args(made, hostile_manifest(made, tmp_path), tmp_path / "zs"))
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(tmp_path / "zs" / "predictions.csv")
    expected = {"'" + label for label in HOSTILE}
    assert set(predictions["label"]) == expected and set(predictions["predicted"]) <= expected
    assert {c for c in predictions.columns if c.startswith("score:")} == {f"score:{x}" for x in HOSTILE}
    assert pd.api.types.is_float_dtype(predictions[f"score:{HOSTILE[0]}"])
    raw = (tmp_path / "zs" / "predictions.csv").read_text()
    assert not any(cell.strip('"').startswith(("=", "+")) for line in raw.splitlines() for cell in line.split(","))


def test_compare_csv_neutralises_hostile_cells(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conceptforest.models.methods.table as table_module

    real = table_module.comparison_table

    def with_a_hostile_method(*args: object, **kwargs: object) -> pd.DataFrame:
        table = real(*args, **kwargs)  # type: ignore[arg-type]
        table.loc[0, "method"] = HOSTILE[1]  # a method registered by the user's code names itself
        return table

    monkeypatch.setattr(table_module, "comparison_table", with_a_hostile_method)
    run, out = made["run"], tmp_path / "compare.csv"
    result = runner.invoke(app, ["compare", str(run / "model"), str(run), "--methods", "forest", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table.loc[0, "method"] == "'" + HOSTILE[1]
    assert pd.api.types.is_float_dtype(table["accuracy"])


def test_skipped_csv_neutralises_hostile_file_names(made: dict[str, Path], tmp_path: Path) -> None:
    from conceptforest.features.extract import write_skipped
    from conceptforest.features.images import SkippedImage

    write_skipped(tmp_path / "skipped.csv", [SkippedImage("=cmd|'/C calc'!A0.jpg", "@not an image")])
    table = pd.read_csv(tmp_path / "skipped.csv")
    assert table.iloc[0].tolist() == ["'=cmd|'/C calc'!A0.jpg", "'@not an image"]


def test_feature_matrix_save_binds_what_it_wrote(tmp_path: Path) -> None:
    from tests.test_models import made_up_matrix

    matrix = made_up_matrix()
    matrix.save(tmp_path)
    recorded = json.loads((tmp_path / "concepts.json").read_text())["features_sha256"]
    assert recorded == hashlib.sha256((tmp_path / "features.parquet").read_bytes()).hexdigest()
    assert len(FeatureMatrix.load(tmp_path).frame) == len(matrix.frame)


# the lock itself


def test_the_folder_lock_is_reentrant_and_leaves_nothing_behind(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    from conceptforest.errors import BadInputError
    from conceptforest.folder_lock import folder_lock

    with folder_lock(tmp_path / "new") as folder, folder_lock(folder):
        assert (folder / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (tmp_path / "new").exists()  # created for nothing: removed again
    with folder_lock(tmp_path) as folder:
        (folder / "kept.txt").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
    pid = hold(holder, tmp_path)
    with pytest.raises(BadInputError) as refused, folder_lock(tmp_path):
        pass
    assert f"is being written by another conceptforest process (pid {pid})" in str(refused.value)
