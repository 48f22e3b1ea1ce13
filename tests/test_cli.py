"""The CLI in-process (typer's runner) and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conceptforest.cli import app
from conceptforest.concepts.tree import ConceptTree
from tests.llm_stub import StubServer

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


@pytest.mark.parametrize(
    "verb",
    [
        [],
        ["concepts"],
        ["concepts", "generate"],
        ["concepts", "render"],
        ["concepts", "show"],
        ["demo"],
        ["features"],
        ["features", "extract"],
        ["train"],
    ],
)
def test_every_verb_has_help(verb: list[str]) -> None:
    result = invoke(*verb, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def write_labels(tmp_path: Path, labels: list[str]) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(labels) + "\n")
    return path


def test_generate_render_show_against_the_stub(stub: StubServer, tmp_path: Path) -> None:
    labels = write_labels(tmp_path, ["husky", "pug", "beagle"])
    tree_path = tmp_path / "tree.json"
    result = invoke(
        "concepts",
        "generate",
        "--domain",
        "dog",
        "--labels",
        str(labels),
        "--llm",
        "stub-model",
        "--llm-base-url",
        stub.base_url,
        "-o",
        str(tree_path),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert "3 labels" in result.output and "LLM calls: 7 (0 from cache)" in result.output
    tree = ConceptTree.load(tree_path)
    assert tree.provenance.llm_model == "stub-model"
    again = invoke(
        "concepts",
        "generate",
        "--domain",
        "dog",
        "--labels",
        str(labels),
        "--llm",
        "stub-model",
        "--llm-base-url",
        stub.base_url,
        "-o",
        str(tree_path),
        "--no-progress",
    )
    assert "LLM calls: 7 (7 from cache)" in again.output and len(stub.state.requests) == 7

    result = invoke("concepts", "render", str(tree_path), "-o", str(tmp_path / "trees"), "-f", "svg", "-f", "dot")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "trees" / "label-husky.dot").exists()
    assert (tmp_path / "trees" / "schema.dot").exists()

    result = invoke("concepts", "show", str(tree_path), "--concepts")
    assert result.exit_code == 0
    assert "concepts: " in result.output and "head/ears:shape=" in result.output
    result = invoke("concepts", "show", str(tree_path), "--json")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {row["id"] for row in rows} == {c.id for c in tree.concepts()}


def test_extend_through_the_cli(stub: StubServer, tmp_path: Path) -> None:
    labels = write_labels(tmp_path, ["husky", "pug"])
    tree_path = tmp_path / "tree.json"
    common = ["--llm", "stub-model", "--llm-base-url", stub.base_url, "--no-progress"]
    assert (
        invoke(
            "concepts", "generate", "--domain", "dog", "--labels", str(labels), "-o", str(tree_path), *common
        ).exit_code
        == 0
    )
    stub.state.requests.clear()
    more = write_labels(tmp_path, ["husky", "pug", "corgi"])
    result = invoke(
        "concepts",
        "generate",
        "--extend",
        str(tree_path),
        "--labels",
        str(more),
        "-o",
        str(tmp_path / "bigger.json"),
        *common,
    )
    assert result.exit_code == 0, result.output
    assert stub.state.steps() == ["values"]
    assert ConceptTree.load(tmp_path / "bigger.json").labels == ["husky", "pug", "corgi"]


def test_importance_csv_shades_the_render(tmp_path: Path) -> None:
    tree_path = tmp_path / "tree.json"
    labels = write_labels(tmp_path, ["a", "b"])
    assert (
        invoke(
            "concepts",
            "generate",
            "--domain",
            "shape",
            "--labels",
            str(labels),
            "--llm",
            "none",
            "-o",
            str(tree_path),
        ).exit_code
        == 0
    )
    csv_path = tmp_path / "imp.csv"
    csv_path.write_text("key,importance\nsurface:colour=red,1.0\n")
    result = invoke(
        "concepts",
        "render",
        str(tree_path),
        "-o",
        str(tmp_path / "t"),
        "-f",
        "dot",
        "--importance",
        str(csv_path),
    )
    assert result.exit_code == 0, result.output
    assert "#d7301f" in (tmp_path / "t" / "label-a.dot").read_text()
    csv_path.write_text("concept,weight\nx,1\n")
    bad = invoke("concepts", "render", str(tree_path), "--importance", str(csv_path))
    assert bad.exit_code == 2 and "key,importance" in bad.output
    csv_path.write_text('{"not": "a csv"}')
    not_csv = invoke("concepts", "render", str(tree_path), "--importance", str(csv_path))
    assert not_csv.exit_code == 2 and "not a CSV with a header and rows" in not_csv.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["concepts", "show", "missing.json"], "'missing.json' does not exist"),
        (
            ["concepts", "generate", "--domain", "dog", "--labels", "nolabels.txt", "--llm", "none"],
            "labels file 'nolabels.txt'",
        ),
        (["concepts", "generate", "--domain", "dog", "--llm", "none"], "No labels were given"),
        (["concepts", "generate", "--labels", "{labels}"], "No LLM model was given"),
        (["concepts", "generate", "--labels", "{labels}", "--llm", "none"], "No domain was given"),
        (
            ["concepts", "generate", "--labels", "{one}", "--llm", "none", "--domain", "dog"],
            "at least 2 labels",
        ),
        (
            ["concepts", "generate", "--labels", "{labels}", "--domain", "dog", "--config", "none.toml"],
            "Config file 'none.toml'",
        ),
        (["concepts", "render", "{badtree}"], "not a valid tree"),
        (
            [
                "concepts",
                "generate",
                "--labels",
                "{labels}",
                "--domain",
                "dog",
                "--llm",
                "m",
                "--llm-base-url",
                "http://127.0.0.1:9/v1",
                "--max-attempts",
                "1",
                "--no-progress",
            ],
            "could not connect",
        ),
    ],
)
def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write_labels(tmp_path, ["husky", "pug"])
    (tmp_path / "one.txt").write_text("husky\n")
    (tmp_path / "bad.json").write_text('{"domain": "dog", "labels": ["a", "b"], "parts": [], "values": {"c": {}}}')
    files = {"{labels}": "labels.txt", "{one}": "one.txt", "{badtree}": "bad.json"}
    result = invoke(*[files.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_module_entry_point_runs_as_a_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conceptforest", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("conceptforest ")


def test_features_extract_through_the_cli(tmp_path: Path) -> None:
    from conceptforest.features import save_tiny_backbone
    from tests.test_features import LABELS, write_hostile, write_images

    root = write_images(tmp_path / "images", per_label=4)
    write_hostile(root / "blue tile")
    tiny = save_tiny_backbone(tmp_path / "tiny")
    labels = write_labels(tmp_path, LABELS)
    tree_path = tmp_path / "tree.json"
    assert (
        invoke(
            "concepts",
            "generate",
            "--domain",
            "toy shape",
            "--labels",
            str(labels),
            "--llm",
            "none",
            "-o",
            str(tree_path),
        ).exit_code
        == 0
    )
    result = invoke(
        "features",
        "extract",
        str(root),
        str(tree_path),
        "--clip",
        f"local-dir:{tiny}",
        "-o",
        str(tmp_path / "run"),
        "--no-progress",
        "--max-pixels",
        "1000000",
    )
    assert result.exit_code == 0, result.output
    assert "12 images x 29 concepts" in result.output
    assert "RANDOM WEIGHTS" in result.output and "skipped 5 file(s)" in result.output
    assert (tmp_path / "run" / "features.parquet").exists() and (tmp_path / "run" / "skipped.csv").exists()
    missing = invoke(
        "features",
        "extract",
        str(tmp_path / "nope"),
        str(tree_path),
        "--clip",
        f"local-dir:{tiny}",
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_train_through_the_cli(tmp_path: Path) -> None:
    from tests.test_models import made_up_matrix

    matrix = made_up_matrix()
    run = tmp_path / "run"
    run.mkdir()
    matrix.frame.to_parquet(run / "features.parquet")
    matrix.save_sidecar(run)
    result = invoke("train", str(run), "-o", str(tmp_path / "model"), "--n-estimators", "50")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "95 % bootstrap" in result.output
    assert (tmp_path / "model" / "model.skops").exists()
    missing = invoke("train", str(tmp_path / "nothing"))
    assert missing.exit_code == 2 and "features.parquet" in missing.output


def shape_images_and_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A small folder of made-up shape images and its template tree (made through the CLI)."""
    from conceptforest.features.synthetic import SHAPES, make_shape_images

    images = make_shape_images(tmp_path / "images", per_label=3, size=16)
    labels = write_labels(tmp_path, list(SHAPES))
    tree = tmp_path / "tree.json"
    generated = invoke(
        "concepts", "generate", "--domain", "shape", "--labels", str(labels), "--llm", "none", "-o", str(tree)
    )
    assert generated.exit_code == 0, generated.output
    return images, tree


def test_an_unknown_extraction_backend_is_a_clear_error(tmp_path: Path) -> None:
    images, tree = shape_images_and_tree(tmp_path)
    result = invoke("features", "extract", str(images), str(tree), "--backend", "spark", "-o", str(tmp_path / "r"))
    assert result.exit_code == 2 and "--backend local or --backend ray" in result.output


def test_backend_ray_without_ray_installed_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    images, tree = shape_images_and_tree(tmp_path)
    args = ["features", "extract", str(images), str(tree), "--clip", "conceptforest-tiny-random", "--backend", "ray"]
    result = invoke(*args, "-o", str(tmp_path / "r"))
    assert result.exit_code == 2 and "pip install 'conceptforest[ray]'" in result.output, result.output
