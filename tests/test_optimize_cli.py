"""``concepts optimize`` end to end (tiny random CLIP saved to a file, stub LLM over HTTP), and the two methods."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conceptforest.cli import app
from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.optimize_record import OptimizationRecord
from conceptforest.features import extract as extract_module
from conceptforest.features.backbone import load_backbone
from conceptforest.features.dataset import load_dataset
from conceptforest.features.synthetic import make_shape_images
from conceptforest.models.methods.base import MethodResult, NotComputed, run_methods
from tests.llm_stub import StubServer
from tests.test_wdys import LABELS, make_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shape_images(tmp_path_factory.mktemp("shapes"), per_label=10, size=32)


def test_optimize_reads_only_training_images_and_writes_the_set_and_history(
    stub: StubServer, shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptforest.features import save_tiny_backbone

    tiny = save_tiny_backbone(tmp_path / "tiny")
    read: list[str] = []
    original = extract_module._read

    def spy(path: Path, max_pixels: int) -> tuple[bytes | None, str | None]:
        read.append(str(path))
        return original(path, max_pixels)

    monkeypatch.setattr(extract_module, "_read", spy)
    out = tmp_path / "descriptors-optimized.json"
    args = ["concepts", "optimize", str(shapes), "--llm", "stub-model", "--llm-base-url", stub.base_url]
    args += ["--clip", f"local-dir:{tiny}", "--shots", "3", "--iterations", "2", "--candidates", "2"]
    result = runner.invoke(app, [*args, "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Train accuracy per iteration" in result.output
    optimized = DescriptorSet.load(out)
    record = optimized.optimization
    assert optimized.style == "optimized" and isinstance(record, OptimizationRecord)
    assert len(record.iterations) == 2 and record.images_per_label == {label: 3 for label in LABELS}
    splits = {str(r.path): r.split for r in load_dataset(shapes).records}
    assert read and all(splits[path] == "train" for path in read)  # no val/test file was even opened
    used = sorted(hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in read)
    assert record.image_sha256 == used
    requests = len(stub.state.requests)
    again = runner.invoke(app, [*args, "-o", str(tmp_path / "again.json"), "--no-progress"])
    assert again.exit_code == 0 and len(stub.state.requests) == requests  # a rerun makes no request


def test_optimize_without_an_llm_or_with_two_starts_is_a_clear_error(shapes: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["concepts", "optimize", str(shapes), "--llm", "none"])
    assert result.exit_code == 2 and "--llm MODEL" in result.output
    both = runner.invoke(app, ["concepts", "optimize", str(shapes), "--llm", "x", "--tree", "a", "--descriptors", "b"])
    assert both.exit_code == 2 and "pass one of them" in both.output


def optimized_set(seen: list[str]) -> DescriptorSet:
    record = OptimizationRecord(
        backbone_id="made-up",
        image_sha256=seen,
        images_per_label={},
        shots=1,
        iterations_asked=1,
        candidates=1,
        replace=1,
        initial_descriptors=1,
        group_size=10,
        seed=42,
        logit_scale=100.0,
        start="test",
    )
    descriptors = {label: [f"{label.split()[0]} colour", "a plain background"] for label in LABELS}
    return DescriptorSet(style="optimized", labels=LABELS, descriptors=descriptors, optimization=record)


def test_both_methods_score_with_the_optimised_set(shapes: Path, tmp_path: Path) -> None:
    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    inputs = make_inputs(backbone, shapes, tmp_path, vision=None, styles=())
    inputs.descriptors["optimized"] = optimized_set(["f" * 64])
    outcomes = {o.name: o for o in run_methods(inputs, ["optimized", "forest-optimized"])}
    row = outcomes["optimized"]
    assert isinstance(row, MethodResult), row
    images = inputs.image_embeddings()
    texts = inputs.text_embeddings(
        [s for label in LABELS for s in inputs.descriptors["optimized"].sentences(label)]
    ).reshape(len(LABELS), 2, -1)
    expected = np.stack([(images @ texts[k].T).mean(axis=1) for k in range(len(LABELS))], axis=1)
    np.testing.assert_allclose(row.scores, expected, rtol=1e-5, atol=1e-6)
    assert "which has" in inputs.descriptors["optimized"].sentences(LABELS[0])[0]  # DCLIP's form
    assert isinstance(outcomes["forest-optimized"], MethodResult)


def test_a_set_tuned_on_evaluated_images_is_refused(shapes: Path, tmp_path: Path) -> None:
    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    inputs = make_inputs(backbone, shapes, tmp_path, vision=None, styles=())
    evaluated = inputs.matrix.frame["sha256"].to_numpy()[inputs.split_mask]
    inputs.descriptors["optimized"] = optimized_set([str(evaluated[0])])
    for outcome in run_methods(inputs, ["optimized", "forest-optimized"]):
        assert isinstance(outcome, NotComputed)
        assert "tuned on 1 of the 'test' images evaluated here" in outcome.reason


def test_a_run_folder_gives_its_split_and_backbone_and_the_methods_accept_the_set(
    stub: StubServer, shapes: Path, tmp_path: Path
) -> None:
    from conceptforest.cache import cache_root
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.models.methods.context import method_inputs

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(reversed(LABELS)) + "\n")  # a label order other than the folders' sorted one
    tree = tmp_path / "tree.json"
    generate = ["concepts", "generate", "--domain", "shape", "--labels", str(labels), "--llm", "none"]
    assert runner.invoke(app, [*generate, "-o", str(tree)]).exit_code == 0
    run = tmp_path / "run"
    extract = ["features", "extract", str(shapes), str(tree), "--clip", "conceptforest-tiny-random"]
    assert runner.invoke(app, [*extract, "-o", str(run), "--no-progress"]).exit_code == 0
    out = run / "descriptors-optimized.json"
    args = ["concepts", "optimize", str(run), "--llm", "stub-model", "--llm-base-url", stub.base_url]
    result = runner.invoke(app, [*args, "--iterations", "1", "--candidates", "1", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    matrix = FeatureMatrix.load(run)
    optimized = DescriptorSet.load(out)
    assert optimized.optimization is not None
    train = set(matrix.frame.loc[matrix.frame["split"] == "train", "sha256"])
    assert set(optimized.optimization.image_sha256) <= train
    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    inputs = method_inputs(matrix, backbone=backbone, descriptors=[optimized], cache_dir=cache_root(None))
    outcomes = run_methods(inputs, ["optimized", "forest-optimized"])
    assert all(isinstance(o, MethodResult) for o in outcomes), outcomes


def optimize_args(stub: StubServer, source: Path, *extra: str) -> list[str]:
    args = ["concepts", "optimize", str(source), "--llm", "stub-model", "--llm-base-url", stub.base_url]
    return [*args, "--clip", "conceptforest-tiny-random", "--iterations", "1", "--candidates", "1", *extra]


def test_user_errors_exit_2_before_any_request(stub: StubServer, shapes: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from conceptforest.concepts.template import template_tree

    tree = tmp_path / "tree.json"
    data = template_tree("shape", LABELS).model_dump(mode="json")
    data["values"][LABELS[0]] = {}
    tree.write_text(json.dumps(data))
    no_concepts = runner.invoke(app, optimize_args(stub, shapes, "--tree", str(tree)))
    assert no_concepts.exit_code == 2 and repr(LABELS[0]) in no_concepts.output, no_concepts.output
    clashing = tmp_path / "clash"
    shutil.copytree(shapes, clashing)
    shutil.copytree(clashing / LABELS[0], clashing / LABELS[0].replace(" ", "_"))
    for image in (clashing / LABELS[0].replace(" ", "_")).iterdir():  # other bytes: not copies of the first
        image.write_bytes(image.read_bytes() + b"\0")
    clash = runner.invoke(app, optimize_args(stub, clashing, "-o", str(tmp_path / "x.json")))
    assert clash.exit_code == 2 and "differ only in case" in clash.output, clash.output
    folder = runner.invoke(app, optimize_args(stub, shapes, "-o", str(tmp_path)))
    assert folder.exit_code == 2 and "is a folder" in folder.output
    assert stub.state.requests == []


def test_a_start_set_spelled_differently_is_matched(stub: StubServer, shapes: Path, tmp_path: Path) -> None:
    start = tmp_path / "start.json"
    descriptors = {label.upper().replace(" ", "_"): ["a plain look"] for label in LABELS}
    DescriptorSet(style="dclip", labels=list(descriptors), descriptors=descriptors).save(start)
    out = tmp_path / "out.json"
    result = runner.invoke(
        app, optimize_args(stub, shapes, "--descriptors", str(start), "-o", str(out), "--shots", "2")
    )
    assert result.exit_code == 0, result.output
    record = DescriptorSet.load(out).optimization
    assert (
        record is not None
        and record.start_accuracy is not None
        and record.images_per_label == dict.fromkeys(sorted(LABELS), 2)
    )


def test_no_cache_read_touches_a_val_or_test_image(
    stub: StubServer, shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptforest.features.store import EmbeddingStore

    asked: list[str] = []
    original = EmbeddingStore.get

    def spy(self: EmbeddingStore, keys):  # type: ignore[no-untyped-def]
        keys = list(keys)
        if self.folder.name == "images":
            asked.extend(keys)
        return original(self, keys)

    monkeypatch.setattr(EmbeddingStore, "get", spy)
    result = runner.invoke(app, optimize_args(stub, shapes, "--shots", "0", "-o", str(tmp_path / "o.json")))
    assert result.exit_code == 0, result.output
    held_out = {
        hashlib.sha256(r.path.read_bytes()).hexdigest() for r in load_dataset(shapes).records if r.split != "train"
    }
    assert asked and not set(asked) & held_out


def test_a_set_tuned_on_validation_images_is_refused(shapes: Path, tmp_path: Path) -> None:
    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    inputs = make_inputs(backbone, shapes, tmp_path, vision=None, styles=())
    frame = inputs.matrix.frame
    frame.loc[frame.index[0], "split"] = "val"
    inputs.descriptors["optimized"] = optimized_set([str(frame["sha256"].iloc[0])])
    (outcome,) = run_methods(inputs, ["optimized"])
    assert isinstance(outcome, NotComputed) and "val/test images" in outcome.reason


def test_the_terminal_says_what_the_llm_left_out_and_what_failed(
    stub: StubServer, shapes: Path, tmp_path: Path
) -> None:
    from tests.llm_stub import asked_labels, optimize_answer

    calls = {"n": 0}

    def patchy(body: dict[str, Any]) -> dict[str, Any]:  # request 1 fails, request 2 leaves the last label out
        calls["n"] += 1
        if calls["n"] == 1:
            return {"labels": {}}
        answer = optimize_answer(body)["labels"]
        kept = asked_labels(body)[:-1] if calls["n"] == 2 else asked_labels(body)
        return {"labels": {label: answer[label] for label in kept}}

    stub.state.answers["optimize_initial"] = patchy
    stub.state.answers["optimize_mutation"] = patchy
    args = optimize_args(stub, shapes, "-o", str(tmp_path / "o.json"), "--max-repairs", "0", "--no-progress")
    result = runner.invoke(app, [*args, "--iterations", "3"])
    assert result.exit_code == 0, result.output
    assert "1 of 3 LLM requests failed; each cost only itself" in result.output
    assert "iteration 1: group 1 (" in result.output and "that group kept its descriptors" in result.output
    assert "answers left out 1 label(s)" in result.output
