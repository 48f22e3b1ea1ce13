"""The CLI's conventions: fast help, one naming convention, no tracebacks, trees never overwritten."""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conceptforest.cli import app
from conceptforest.concepts.tree import ConceptTree

runner = CliRunner()
VERBS = [
    [],
    ["concepts"],
    ["concepts", "generate"],
    ["concepts", "render"],
    ["concepts", "show"],
    ["features"],
    ["features", "extract"],
    ["train"],
    ["explain"],
    ["predict"],
    ["compare"],
    ["zeroshot"],
    ["run"],
    ["demo"],
]


def test_help_and_version_import_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from conceptforest.cli import main\n"
        "for argv in (['--help'], ['--version'], ['run', '--help'], ['features', 'extract', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (argv, exc.code)\n"
        "heavy = sorted({'torch', 'open_clip', 'openai', 'sklearn', 'shap', 'matplotlib'} & set(sys.modules))\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "root")
def test_help_shows_no_python_types_and_no_cut_descriptions(verb: list[str]) -> None:
    result = runner.invoke(app, [*verb, "--help"])
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(list|dict|int|str|float|path)", result.output, re.IGNORECASE), result.output
    commands = result.output.split("Commands:")[1] if "Commands:" in result.output else ""
    assert not [line for line in commands.splitlines() if line.rstrip().endswith("...")], commands


def test_top_level_help_lists_verbs_in_pipeline_order() -> None:
    output = runner.invoke(app, ["--help"]).output
    commands = [line.split()[0] for line in output.split("Commands:")[1].splitlines() if line.strip()]
    assert commands == ["concepts", "features", "train", "explain", "predict", "compare", "zeroshot", "run", "demo"]


@pytest.mark.parametrize("verb", [["explain"], ["compare"], ["predict"], ["run"], ["features", "extract"]])
def test_backbone_flags_are_the_same_on_every_verb_that_loads_one(verb: list[str]) -> None:
    output = runner.invoke(app, [*verb, "--help"]).output
    for flag in ("--clip", "--pretrained", "--checkpoint", "--device", "--cache-dir"):
        assert flag in output, (verb, flag)


def test_run_accepts_the_same_llm_flags_as_concepts_generate() -> None:
    generate = runner.invoke(app, ["concepts", "generate", "--help"]).output
    run = runner.invoke(app, ["run", "--help"]).output
    flags = set(re.findall(r"--[a-z][a-z-]+", generate)) - {"--extend", "--labels", "--domain", "--out", "--help"}
    assert flags and flags <= set(re.findall(r"--[a-z][a-z-]+", run)), flags - set(re.findall(r"--[a-z-]+", run))


def test_an_unexpected_error_is_one_line_exit_1_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import conceptforest.concepts.tree as tree_module

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(tree_module.ConceptTree, "load", explode)
    (tmp_path / "t.json").write_text("{}")
    result = runner.invoke(app, ["concepts", "show", str(tmp_path / "t.json")])
    assert result.exit_code == 1
    assert "unexpected RuntimeError: boom" in result.output and "bug" in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_is_a_clear_message_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import conceptforest.concepts.tree as tree_module

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "tree.json"))

    monkeypatch.setattr(tree_module.ConceptTree, "save", full)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    result = runner.invoke(
        app, ["concepts", "generate", "--domain", "d", "--labels", str(labels), "--llm", "none", "-o", "x.json"]
    )
    assert result.exit_code == 2, result.output
    assert "disk is full" in result.output and "tree.json" in result.output and "Traceback" not in result.output


def test_render_accepts_the_reports_own_importance_tables(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    tree_path = tmp_path / "tree.json"
    args = ["concepts", "generate", "--domain", "d", "--labels", str(labels), "--llm", "none", "-o", str(tree_path)]
    assert runner.invoke(app, args).exit_code == 0
    concept = ConceptTree.load(tree_path).concepts()[0].id
    table = tmp_path / "permutation_importance.csv"
    table.write_text(f"concept,mean,std,ci95_low,ci95_high,repeats\n{concept},0.2,0.01,0.1,0.3,5\n")
    result = runner.invoke(
        app, ["concepts", "render", str(tree_path), "-o", str(tmp_path / "t"), "-f", "dot", "--importance", str(table)]
    )
    assert result.exit_code == 0, result.output
    assert any("#d7301f" in path.read_text() for path in (tmp_path / "t").glob("label-*.dot"))


def _run_args(images: Path, out: Path, tiny: Path, *extra: str) -> list[str]:
    return [
        "run",
        str(images),
        "-o",
        str(out),
        "--clip",
        f"local-dir:{tiny}",
        "--n-estimators",
        "10",
        "--cache-dir",
        str(out.parent / "cache"),
        "--no-progress",
        *extra,
    ]


def test_run_says_in_the_terminal_when_the_tree_cannot_tell_labels_apart(tmp_path: Path) -> None:
    from conceptforest.concepts.template import template_tree
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.synthetic import make_shape_images

    labels = ["red disc", "blue tile"]
    images = make_shape_images(tmp_path / "images", per_label=8, labels=labels)
    degenerate = tmp_path / "same-values.json"
    template_tree("toy shape", labels).save(degenerate)  # every label has the same values
    result = runner.invoke(
        app, _run_args(images, tmp_path / "run", save_tiny_backbone(tmp_path / "tiny"), "--tree", str(degenerate))
    )
    assert result.exit_code == 0, result.output
    assert "Warning: All 2 labels have the same" in result.output
    assert "so the tree cannot tell them apart" in result.output


def test_explain_and_compare_refuse_a_tree_edited_after_extraction(tmp_path: Path) -> None:
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.synthetic import make_shape_images

    images = make_shape_images(tmp_path / "images", per_label=8, labels=["red disc", "blue tile"])
    tiny, out = save_tiny_backbone(tmp_path / "tiny"), tmp_path / "run"
    made = runner.invoke(app, _run_args(images, out, tiny, "--domain", "toy shape", "--llm", "none"))
    assert made.exit_code == 0, made.output
    shutil.copyfile(out / "tree.json", tmp_path / "original.json")
    edited = ConceptTree.load(out / "tree.json").model_copy(update={"sentence_template": "it shows {value}"})
    edited.save(out / "tree.json")
    model = [str(out / "model"), str(out)]
    for verb in (["explain", *model, "-o", str(tmp_path / "report")], ["compare", *model]):
        refused = runner.invoke(app, verb)
        assert refused.exit_code == 2, refused.output
        assert f"The concept tree '{out / 'tree.json'}'" in refused.output
        assert "is not the tree the features" in refused.output and "Fix: give the tree" in refused.output
    assert not (tmp_path / "report").exists()
    kept = runner.invoke(app, ["compare", *model, "--tree", str(tmp_path / "original.json"), "--methods", "forest"])
    assert kept.exit_code == 0, kept.output


def test_run_never_overwrites_a_users_tree(tmp_path: Path) -> None:
    from conceptforest.concepts.template import template_tree
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.synthetic import make_shape_images

    labels = ["red disc", "blue tile"]
    images = make_shape_images(tmp_path / "images", per_label=8, labels=labels)
    tiny = save_tiny_backbone(tmp_path / "tiny")
    out = tmp_path / "run"
    first = runner.invoke(app, _run_args(images, out, tiny, "--domain", "toy shape", "--llm", "none"))
    assert first.exit_code == 0, first.output
    edited = ConceptTree.load(out / "tree.json").model_copy(update={"sentence_template": "it shows {value}"})
    edited.save(out / "tree.json")
    again = runner.invoke(app, _run_args(images, out, tiny))
    assert again.exit_code == 0, again.output
    assert "Using the concept tree" in again.output
    assert ConceptTree.load(out / "tree.json").sentence_template == "it shows {value}"

    own = tmp_path / "mine.json"
    template_tree("toy shape", ["red disc"]).save(own)
    before = own.read_bytes()
    third = runner.invoke(app, _run_args(images, out, tiny, "--tree", str(own), "--llm", "none"))
    assert third.exit_code == 0, third.output
    assert own.read_bytes() == before
    assert ConceptTree.load(out / "tree.json").labels == ["red disc", "blue tile"]
    (previous,) = out.glob("tree.previous-*.json")
    assert ConceptTree.load(previous).sentence_template == "it shows {value}"


def test_a_large_generation_asks_for_yes_before_any_request(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"label {i}" for i in range(300)) + "\n")
    args = ["concepts", "generate", "--domain", "d", "--labels", str(labels), "--llm", "m"]
    # Nothing listens on this port: a request would fail with a connection error, not the --yes message.
    result = runner.invoke(app, [*args, "--llm-base-url", "http://127.0.0.1:9/v1", "--max-attempts", "1"])
    assert result.exit_code == 2, result.output
    assert "Plan: up to" in result.output and "pass --yes" in result.output
    assert "running" not in result.output


def test_duplicate_labels_are_refused_before_any_request(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("husky\npug\nHusky \n")
    args = ["concepts", "generate", "--domain", "dog", "--labels", str(labels), "--llm", "m"]
    result = runner.invoke(app, [*args, "--llm-base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 2, result.output
    assert "husky" in result.output.lower() and "Traceback" not in result.output


@pytest.mark.parametrize("verb", ["compare", "explain"])
def test_an_unknown_split_is_refused_before_anything_loads(verb: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [verb, str(tmp_path / "model"), str(tmp_path / "run"), "--split", "foo"])
    assert result.exit_code == 2 and "'foo' is not a split; use train, val or test" in result.output
