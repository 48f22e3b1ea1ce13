"""Issue 7, model half: bound and checked model bundles, labels without training rows, the estimator contract,
reloading the trained backbone, and ``predict`` on images that cannot be read."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.utils.estimator_checks import parametrize_with_checks

from conceptforest.cli import main
from conceptforest.errors import BadInputError, EstimatorInputError
from conceptforest.explain.predict import Contribution, ImagePrediction, ImageSkipped, backbone_for, predict_images
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models import ConceptForestClassifier, ModelBundle, load_bundle, train_model
from conceptforest.models import bundle as bundle_module
from conceptforest.models.manifest import BundleManifest
from tests.test_models import made_up_matrix

# --- item 12: model.skops and manifest.json are one pair ---------------------------------------------------------


def trained(folder: Path, seed: int = 0) -> Path:
    train_model(made_up_matrix(n=120, seed=seed), folder, n_estimators=5, random_state=seed)
    return folder


def rewrite_manifest(folder: Path, **changes: Any) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_manifest_records_the_model_files_sha256(tmp_path: Path) -> None:
    folder = trained(tmp_path / "model")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model_sha256"] == hashlib.sha256((folder / "model.skops").read_bytes()).hexdigest()
    assert manifest["format_version"] == 2
    load_bundle(folder)


def test_a_model_file_from_another_run_is_refused(tmp_path: Path) -> None:
    first, second = trained(tmp_path / "a", seed=0), trained(tmp_path / "b", seed=1)
    shutil.copy(second / "model.skops", first / "model.skops")
    with pytest.raises(BadInputError, match=r"is not the model that .*manifest.json.* describes") as info:
        load_bundle(first)
    assert str(first) in info.value.message and "retrain" in str(info.value.hint)


def test_a_kill_between_the_two_writes_leaves_a_pair_that_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = trained(tmp_path / "model", seed=0)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_module, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        train_model(made_up_matrix(n=120, seed=1), folder, n_estimators=7, random_state=1)
    monkeypatch.undo()
    with pytest.raises(BadInputError, match="interrupted"):
        load_bundle(folder)


def test_a_bundle_without_the_hash_is_refused_with_the_fix(tmp_path: Path) -> None:
    folder = trained(tmp_path / "model")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["model_sha256"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match="does not record the sha256 of its model file") as info:
        load_bundle(folder)
    assert "retrain" in str(info.value.hint)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: {"concept_ids": m["concept_ids"][::-1]}, "concept ids are not the model's features"),
        (lambda m: {"labels": m["labels"][::-1]}, "are not the model's classes"),
        (lambda m: {"concepts": m["concepts"][1:]}, "concept sentences do not follow"),
    ],
)
def test_the_manifest_must_describe_its_model(tmp_path: Path, change: Any, problem: str) -> None:
    folder = trained(tmp_path / "model")
    rewrite_manifest(folder, **change(json.loads((folder / "manifest.json").read_text())))
    with pytest.raises(BadInputError, match=problem):
        load_bundle(folder)


# --- item 13: damaged or tampered bundle files -----------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "file", "problem"),
    [
        (lambda f: truncate(f / "manifest.json"), "manifest.json", "is not valid JSON"),
        (lambda f: (f / "manifest.json").write_bytes(b"\xff\xfe{"), "manifest.json", "is not valid JSON"),
        (lambda f: (f / "manifest.json").write_text("[1, 2]"), "manifest.json", "is not a model manifest"),
        (lambda f: rewrite_manifest(f, labels="ab"), "manifest.json", r"garbles the field\(s\) \['labels'\]"),
        (lambda f: truncate(f / "model.skops"), "model.skops", "is not a readable skops model file"),
        (lambda f: (f / "model.skops").write_bytes(b"garbage" * 100), "model.skops", "is not a readable skops"),
    ],
)
def test_damaged_bundle_files_give_one_clear_error(tmp_path: Path, damage: Any, file: str, problem: str) -> None:
    folder = trained(tmp_path / "model")
    damage(folder)
    with pytest.raises(BadInputError, match=problem) as info:
        load_bundle(folder)
    assert str(folder / file) in info.value.message


class Payload:
    """A type no model file of ours contains."""


def test_an_untrusted_type_is_refused_even_when_the_hash_matches(tmp_path: Path) -> None:
    folder = trained(tmp_path / "model")
    data = sio.dumps({"model": Payload()})
    (folder / "model.skops").write_bytes(data)
    rewrite_manifest(folder, model_sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(BadInputError, match="does not trust") as info:
        load_bundle(folder)
    assert str(folder / "model.skops") in info.value.message


def test_predict_on_a_damaged_bundle_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = trained(tmp_path / "model")
    truncate(folder / "manifest.json")
    with pytest.raises(SystemExit) as info:
        main(["predict", str(folder), str(tmp_path / "any.png")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "manifest.json" in err and "Traceback" not in err


# --- item 7: a label without training rows --------------------------------------------------------------------


def without_train_rows(label: str) -> FeatureMatrix:
    matrix = made_up_matrix(n=120)
    rows = matrix.frame["label"] == label
    matrix.frame.loc[rows, "split"] = np.where(np.arange(rows.sum()) % 3 == 0, "val", "test")
    return matrix


def test_a_label_without_training_rows_is_named_before_training(tmp_path: Path) -> None:
    matrix = without_train_rows("pug")
    tests, vals = ((matrix.rows(split)["label"] == "pug").sum() for split in ("test", "val"))
    with pytest.raises(BadInputError, match=rf"'pug' \(rows in other splits: {tests} test, {vals} val\)") as info:
        train_model(matrix, tmp_path / "model", n_estimators=5)
    assert "add readable images" in str(info.value.hint) and "remove the labels from the tree" in str(info.value.hint)
    assert not (tmp_path / "model").exists()


def test_a_label_whose_every_image_was_skipped_is_named() -> None:
    matrix = made_up_matrix(n=120)
    matrix = matrix.with_meta(labels=[*matrix.labels, "poodle"])
    with pytest.raises(BadInputError, match=r"'poodle' \(rows in other splits: none\)"):
        train_model(matrix, n_estimators=5)


def test_a_single_training_row_with_a_grid_search_is_named() -> None:
    matrix = made_up_matrix(n=120)
    pugs = matrix.frame.index[(matrix.frame["label"] == "pug") & (matrix.frame["split"] == "train")]
    matrix.frame.loc[pugs[1:], "split"] = "test"
    with pytest.raises(BadInputError, match=r"3-fold stratified cross-validation .* 'pug' has 1"):
        train_model(matrix, n_estimators=5, param_grid={"max_depth": [2, None]}, cv=3)
    train_model(matrix, n_estimators=5)  # without the grid one row is enough


# --- sklearn's estimator contract -----------------------------------------------------------------------------


def test_estimator_input_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="1 class") as info:
        ConceptForestClassifier(n_estimators=3).fit(np.zeros((4, 2)), ["a"] * 4)
    assert isinstance(info.value, EstimatorInputError) and isinstance(info.value, BadInputError)


@parametrize_with_checks([ConceptForestClassifier(n_estimators=5)])  # type: ignore[untyped-decorator]
def test_sklearn_estimator_checks(estimator: ConceptForestClassifier, check: Any) -> None:
    check(estimator)


# --- item 11: reloading the backbone the model was trained on ------------------------------------------------


class LoadRecorder:
    """Stands in for load_backbone: records its arguments and returns an object with the trained id."""

    def __init__(self, backbone_id: str) -> None:
        self.backbone_id = backbone_id
        self.calls: list[dict[str, Any]] = []

    def __call__(self, name: str, pretrained: str | None, **kwargs: Any) -> Any:
        self.calls.append({"name": name, "pretrained": pretrained, **kwargs})
        return type("FakeBackbone", (), {"backbone_id": self.backbone_id})()


def bundle_trained_on(spec: dict[str, Any], backbone_id: str) -> ModelBundle:
    manifest = {"backbone": spec, "backbone_id": backbone_id, "concept_ids": [], "labels": [], "concepts": []}
    return ModelBundle(model=ConceptForestClassifier(), manifest=BundleManifest.model_validate(manifest))


@pytest.fixture
def checkpoint_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelBundle, Path, LoadRecorder]:
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"pretend weights")
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    weights = f"sha256-{digest[:16]}"
    backbone_id = f"ViT-B-32__{weights}__pre-abc"
    spec = {"model": "ViT-B-32", "weights": weights, "precision": "fp32"}
    spec |= {"checkpoint": str(checkpoint), "checkpoint_sha256": digest}
    recorder = LoadRecorder(backbone_id)
    monkeypatch.setattr("conceptforest.features.backbone.load_backbone", recorder)
    return bundle_trained_on(spec, backbone_id), checkpoint, recorder


def test_the_recorded_checkpoint_is_used_when_it_is_unchanged(
    checkpoint_bundle: tuple[ModelBundle, Path, LoadRecorder], tmp_path: Path
) -> None:
    bundle, checkpoint, recorder = checkpoint_bundle
    backbone_for(bundle, cache_dir=tmp_path / "cache")
    call = recorder.calls[0]
    assert Path(call["checkpoint"]) == checkpoint and Path(call["cache_dir"]) == tmp_path / "cache"


def test_a_moved_or_changed_checkpoint_asks_for_the_file(
    checkpoint_bundle: tuple[ModelBundle, Path, LoadRecorder],
) -> None:
    bundle, checkpoint, recorder = checkpoint_bundle
    checkpoint.write_bytes(b"other weights")
    with pytest.raises(BadInputError, match="has changed since") as info:
        backbone_for(bundle)
    assert "--checkpoint FILE" in str(info.value.hint) and str(checkpoint) in str(info.value.hint)
    moved = checkpoint.rename(checkpoint.with_name("moved.pt"))
    with pytest.raises(BadInputError, match="no longer exists"):
        backbone_for(bundle)
    moved.write_bytes(b"pretend weights")
    backbone_for(bundle, clip="ViT-B-32", checkpoint=moved)
    assert Path(recorder.calls[-1]["checkpoint"]) == moved


def test_a_different_backbone_is_refused_before_any_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("the backbone was loaded")

    monkeypatch.setattr("conceptforest.features.backbone.load_backbone", no_download)
    bundle = bundle_trained_on(
        {"model": "ViT-B-32", "weights": "laion2b_s34b_b79k", "precision": "fp32"},
        "ViT-B-32__laion2b_s34b_b79k__pre-abc",
    )
    with pytest.raises(BadInputError, match="not the one the model was trained on") as info:
        backbone_for(bundle, pretrained="openai")
    assert "--clip ViT-B-32 --pretrained laion2b_s34b_b79k" in str(info.value.hint)
    with pytest.raises(BadInputError, match="laion2b_s34b_b79k"):
        backbone_for(bundle, clip="ViT-L-14")


def test_a_moved_model_folder_names_what_the_model_was_trained_with(tmp_path: Path) -> None:
    bundle = bundle_trained_on(
        {"model": f"local-dir:{tmp_path / 'gone'}", "weights": "sha256-0123456789abcdef"},
        "local-dir__sha256-0123456789abcdef__pre-abc",
    )
    with pytest.raises(BadInputError, match="no longer there") as info:
        backbone_for(bundle)
    assert "--clip local-dir:FOLDER" in str(info.value.hint) and "sha256-0123456789abcdef" in str(info.value.hint)


# --- item 24: predict on images that cannot be read ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from conceptforest.concepts.template import template_tree
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.backbone import load_backbone
    from conceptforest.features.dataset import load_dataset
    from conceptforest.features.extract import extract_features
    from conceptforest.features.synthetic import make_shape_images

    root = tmp_path_factory.mktemp("tiny")
    labels = ["red disc", "blue tile"]
    images = make_shape_images(root / "images", per_label=6, labels=labels, size=32)
    backbone = load_backbone(f"local-dir:{save_tiny_backbone(root / 'backbone')}", None)
    dataset = load_dataset(images, labels=labels)
    matrix, _ = extract_features(
        dataset, template_tree("shape", labels), backbone, root / "run", cache_dir=root / "cache", progress=False
    )
    train_model(matrix, root / "model", n_estimators=5)
    return root / "model", next((images / "red disc").glob("*.png")), root / "cache"


def test_predict_returns_typed_results(tiny_model: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, image, cache = tiny_model
    results = predict_images(model, [image, tmp_path / "missing.png"], top=3, cache_dir=cache)
    predicted, skipped = results
    assert isinstance(skipped, ImageSkipped)
    assert isinstance(predicted, ImagePrediction) and isinstance(predicted.contributions[0], Contribution)
    assert predicted.label in {"red disc", "blue tile"} and len(predicted.contributions) == 3
    assert skipped == ImageSkipped(str(tmp_path / "missing.png"), skipped.reason) and "No such file" in skipped.reason


def test_predict_exits_2_when_an_image_cannot_be_read_and_explains_the_rest(
    tiny_model: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, image, cache = tiny_model
    missing, empty = tmp_path / "missing.png", tmp_path / "empty.png"
    empty.write_bytes(b"")
    args = ["predict", str(model), str(missing), str(image), str(empty), "--cache-dir", str(cache)]
    with pytest.raises(SystemExit) as info:
        main([*args, "--json"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert info.value.code == 2 and sorted(rows[0]) == ["error", "path"]
    assert rows[1]["label"] in {"red disc", "blue tile"} and "empty" in rows[2]["error"]
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    assert info.value.code == 2 and f"{image}: " in out
    assert f"{missing}: could not be read" in err and f"{empty}: could not be read" in err
    assert "2 of 3 image(s) could not be read" in err and "Traceback" not in err


def test_predict_strips_control_characters_from_what_it_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = ImagePrediction(
        path="a\x1b]0;title\x07.png",
        label="pug\x1b[2J",
        probabilities={"pug\x1b[2J": 0.9, "husky": 0.1},
        contributions=(Contribution("head:ears=\x1b[31mred", 0.5, 0.2),),
    )
    monkeypatch.setattr("conceptforest.explain.predict.predict_images", lambda *a, **k: [hostile])
    with pytest.raises(SystemExit) as info:
        main(["predict", "model", "a.png"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "\x1b" not in out and "\x07" not in out
    assert "a.png: pug  (pug 0.90, husky 0.10)" in out and "head:ears=red" in out


def test_a_matrix_from_another_tree_or_split_is_refused(tmp_path: Path) -> None:
    from conceptforest.models.bundle import load_bundle
    from conceptforest.models.train import train_model
    from tests.test_models import made_up_matrix

    matrix = made_up_matrix(n=120).with_meta(split_seed=0)
    train_model(matrix, tmp_path / "model", n_estimators=5)
    bundle = load_bundle(tmp_path / "model")
    bundle.check_matrix(matrix)  # its own features pass
    other_tree = matrix.with_meta(tree_hash="f" * 64)
    with pytest.raises(BadInputError, match="from tree ffffffffffff, the model was trained on tree"):
        bundle.check_matrix(other_tree)
    with pytest.raises(BadInputError, match="the split was made with seed 1, the model's with seed 0"):
        bundle.check_matrix(matrix.with_meta(split_seed=1))
