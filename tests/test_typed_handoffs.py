"""Typed hand-offs: concepts.json as FeatureMeta, manifest.json as BundleManifest, one BackboneSpec."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from conceptforest.cache import file_sha256
from conceptforest.concepts.tree import Concept
from conceptforest.config import RunConfig
from conceptforest.errors import BadInputError
from conceptforest.explain.backbone_check import backbone_spec_for
from conceptforest.features.backbone import TINY_RANDOM, load_backbone, save_tiny_backbone
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.meta import FeatureMeta
from conceptforest.features.spec import BackboneSpec
from conceptforest.models import ModelBundle, load_bundle, train_model
from conceptforest.models.manifest import BundleManifest
from tests.test_models import made_up_matrix

PACKAGE = Path(__file__).resolve().parents[1] / "conceptforest"
# the keys the previous version wrote into each file: files written by it must still load
OLD_SIDECAR_KEYS = {
    "format_version", "labels", "concepts", "backbone_id", "backbone", "random_weights", "warning", "tree_hash",
    "tree_generator", "split_seed", "source", "n_images", "n_scored", "n_skipped", "standardization", "versions",
    "features_sha256",
}  # fmt: skip
OLD_MANIFEST_KEYS = {
    "format_version", "created_at", "model_sha256", "concept_ids", "labels", "backbone_id", "backbone", "concepts",
    "random_weights", "tree_hash", "params", "param_grid", "best_params", "seeds", "metrics", "versions",
}  # fmt: skip
OLD_BACKBONE = {
    "model": "ViT-B-32",
    "weights": "laion2b_s34b_b79k",
    "preprocess": "Compose(...)",
    "random_weights": False,
    "precision": "fp32",
}


def old_sidecar(matrix: FeatureMatrix, features: Path) -> dict[str, Any]:
    """concepts.json exactly as the previous version's ``_sidecar_meta`` wrote it (plus its binding)."""
    n = len(matrix.concept_ids)
    return {
        "format_version": 2,
        "labels": matrix.labels,
        "concepts": [{**dataclasses.asdict(c), "labels": list(c.labels)} for c in matrix.concepts],
        "backbone_id": "ViT-B-32__laion2b_s34b_b79k__pre-0123456789ab",
        "backbone": OLD_BACKBONE,
        "random_weights": False,
        "warning": None,
        "tree_hash": "abc",
        "tree_generator": "template",
        "split_seed": 0,
        "source": "images",
        "n_images": len(matrix.frame),
        "n_scored": len(matrix.frame),
        "n_skipped": 0,
        "standardization": {"mean": [0.5] * n, "std": [1.0] * n, "fitted_on": "train", "rows": 10},
        "versions": {"numpy": "2.0.0", "scikit-learn": None},
        "features_sha256": file_sha256(features),
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return made_up_matrix(n=40).save(tmp_path / "run")


def rewrite(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- concepts.json ---------------------------------------------------------------------------------------------


def test_concepts_json_round_trips_through_feature_meta(run_dir: Path) -> None:
    matrix = FeatureMatrix.load(run_dir)
    assert isinstance(matrix.meta, FeatureMeta) and all(isinstance(c, Concept) for c in matrix.concepts)
    on_disk = json.loads((run_dir / "concepts.json").read_text())
    assert set(on_disk) == OLD_SIDECAR_KEYS | {"image_decoder"}  # the keys it has always had, plus the decoder
    assert FeatureMeta.model_validate(on_disk) == matrix.meta
    assert FeatureMeta.model_validate_json(matrix.meta.model_dump_json()) == matrix.meta
    assert matrix.concept_ids == [c["id"] for c in on_disk["concepts"]] and matrix.labels == on_disk["labels"]


def test_a_sidecar_written_by_the_previous_version_loads(run_dir: Path) -> None:
    matrix = FeatureMatrix.load(run_dir)
    (run_dir / "concepts.json").write_text(json.dumps(old_sidecar(matrix, run_dir / "features.parquet")))
    loaded = FeatureMatrix.load(run_dir)
    assert loaded.concepts == matrix.concepts and loaded.backbone_id.startswith("ViT-B-32__laion2b")
    spec = loaded.meta.backbone
    assert spec is not None and spec.kind == "open_clip" and spec.pretrained == "laion2b_s34b_b79k"
    assert loaded.meta.standardization is not None and loaded.meta.standardization.rows == 10
    assert loaded.X("train", standardized=True).shape == loaded.X("train").shape


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.pop("features_sha256"), "does not record which features.parquet"),
        (lambda d: d.update(labels="husky"), "labels"),
        (lambda d: d["concepts"][0].pop("id"), "concepts.0.id"),
        (lambda d: d.update(standardization={"mean": [0.0], "std": [1.0]}), "standardization covers 1 concepts"),
        (lambda d: d.update(format_version=3), "sidecar format 3"),
        (lambda d: d.update(unexpected_key=1), "unexpected_key"),
    ],
)
def test_an_old_or_broken_sidecar_is_refused_naming_the_file_and_the_fix(
    run_dir: Path, change: Any, words: str
) -> None:
    rewrite(run_dir / "concepts.json", change)
    with pytest.raises(BadInputError, match=re.escape(words)) as info:
        FeatureMatrix.load(run_dir)
    assert "concepts.json" in info.value.message and "features extract" in str(info.value.hint)


def test_the_sidecar_in_memory_is_typed_and_changed_only_by_copy() -> None:
    matrix = made_up_matrix(n=12)
    with pytest.raises(Exception, match="frozen"):
        matrix.meta.backbone_id = "other"  # type: ignore[misc]
    other = matrix.with_meta(backbone_id="other")
    assert other.backbone_id == "other" and matrix.backbone_id == "made-up"
    with pytest.raises(Exception, match="unique"):
        matrix.with_meta(concepts=[matrix.concepts[0], matrix.concepts[0]])


# --- manifest.json ---------------------------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    train_model(made_up_matrix(n=80), tmp_path / "model", n_estimators=5)
    return tmp_path / "model"


def test_train_model_returns_a_bundle_carrying_its_metrics(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=80)
    unsaved = train_model(matrix, n_estimators=5)
    assert isinstance(unsaved, ModelBundle) and unsaved.manifest.model_sha256 is None
    assert unsaved.metrics["eval_split"] == "test" and 0.0 <= unsaved.metrics["accuracy"] <= 1.0
    saved = train_model(matrix, tmp_path / "model", n_estimators=5)
    assert saved.manifest.model_sha256 == file_sha256(tmp_path / "model" / "model.skops")
    assert saved.concept_ids == matrix.concept_ids and saved.manifest.sentences == [c.sentence for c in matrix.concepts]


def test_manifest_json_round_trips_through_bundle_manifest(model_dir: Path) -> None:
    bundle = load_bundle(model_dir)
    on_disk = json.loads((model_dir / "manifest.json").read_text())
    assert set(on_disk) == OLD_MANIFEST_KEYS
    assert isinstance(bundle.manifest, BundleManifest) and BundleManifest.model_validate(on_disk) == bundle.manifest
    assert BundleManifest.model_validate_json(bundle.manifest.model_dump_json()) == bundle.manifest
    assert bundle.metrics == on_disk["metrics"]
    assert bundle.manifest.seeds.random_state == on_disk["seeds"]["random_state"]


def test_a_manifest_written_by_the_previous_version_loads(model_dir: Path) -> None:
    rewrite(model_dir / "manifest.json", lambda d: d.update(backbone=OLD_BACKBONE))
    spec = load_bundle(model_dir).manifest.backbone
    assert spec is not None and spec.pretrained == "laion2b_s34b_b79k" and spec.precision == "fp32"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.pop("model_sha256"), "does not record the sha256 of its model file"),
        (lambda d: d.update(format_version=1), "another bundle format (1)"),
        (lambda d: d["concepts"][0].pop("sentence"), "garbles the field(s) ['concepts']"),
        (lambda d: d.update(seeds={"random_state": "zero"}), "garbles the field(s) ['seeds']"),
        (lambda d: d["backbone"].update(precision="fp8"), "garbles the field(s) ['backbone']"),
    ],
)
def test_an_old_or_broken_manifest_is_refused_naming_the_file_and_the_fix(
    model_dir: Path, change: Any, words: str
) -> None:
    rewrite(model_dir / "manifest.json", lambda d: d.update(backbone=OLD_BACKBONE))
    rewrite(model_dir / "manifest.json", change)
    with pytest.raises(BadInputError, match=re.escape(words)) as info:
        load_bundle(model_dir)
    assert "manifest.json" in info.value.message and "conceptforest train" in str(info.value.hint)


# --- BackboneSpec ----------------------------------------------------------------------------------------------


def test_backbone_spec_parses_every_naming_form_and_round_trips(tmp_path: Path) -> None:
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"pretend weights")
    forms = {
        "open_clip": BackboneSpec.parse("ViT-B-32", "openai", cache_dir=tmp_path / "dl"),
        "hf-hub": BackboneSpec.parse("hf-hub:org/model", None),
        "local-dir": BackboneSpec.parse(f"local-dir:{tmp_path}", "openai"),
        "checkpoint": BackboneSpec.parse("ViT-B-32", "openai", checkpoint=checkpoint),
        "tiny-random": BackboneSpec.parse(TINY_RANDOM, precision="int8"),
    }
    for kind, spec in forms.items():
        assert spec.kind == kind
        assert BackboneSpec.model_validate_json(spec.model_dump_json()) == spec
        assert BackboneSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json")))) == spec
    assert forms["open_clip"].pretrained == "openai" and forms["open_clip"].cache_dir == str(tmp_path / "dl")
    # a tag does not apply to a folder, a checkpoint file or the tiny model: it is dropped
    assert forms["local-dir"].pretrained is None and forms["checkpoint"].pretrained is None
    assert forms["tiny-random"].precision == "int8" and forms["local-dir"].folder == tmp_path
    assert forms["open_clip"].expected_id_prefix() == "ViT-B-32__openai__"
    assert forms["checkpoint"].expected_id_prefix() == f"ViT-B-32__sha256-{file_sha256(checkpoint)[:16]}__"
    with pytest.raises(BadInputError, match="precision"):
        BackboneSpec.parse("ViT-B-32", precision="fp8")
    with pytest.raises(BadInputError, match="names no CLIP model"):
        BackboneSpec.parse("local-dir:")


def test_a_spec_loads_the_same_backbone_back(tmp_path: Path) -> None:
    folder = save_tiny_backbone(tmp_path / "tiny")
    for spec in (BackboneSpec.parse(TINY_RANDOM), BackboneSpec.parse(f"local-dir:{folder}", None)):
        backbone = spec.load(device="cpu")
        prefix = spec.expected_id_prefix()
        assert prefix is not None and backbone.backbone_id.startswith(prefix)
        stored = BackboneSpec.model_validate_json(backbone.spec.model_dump_json())  # as an artefact records it
        assert stored.load(device="cpu").backbone_id == backbone.backbone_id
    direct = load_backbone(f"local-dir:{folder}", device="cpu")
    assert BackboneSpec.parse(f"local-dir:{folder}").load(device="cpu").backbone_id == direct.backbone_id


@pytest.mark.parametrize(
    "flags",
    [
        {"model": "ViT-B-32", "pretrained": "openai"},
        {"model": "hf-hub:org/model", "pretrained": None},
        {"model": TINY_RANDOM, "pretrained": "openai"},
        {"model": "ViT-B-16", "checkpoint": "weights.pt"},
    ],
)
def test_run_config_and_backbone_for_give_the_same_spec(flags: dict[str, Any], tmp_path: Path) -> None:
    flags = {**flags, "checkpoint": tmp_path / flags["checkpoint"]} if "checkpoint" in flags else flags
    if "checkpoint" in flags:
        flags["checkpoint"].write_bytes(b"weights")
    config = RunConfig.model_validate({"clip": flags, "cache_dir": tmp_path / "cache"})
    bundle = train_model(made_up_matrix(n=40), n_estimators=3)
    from_bundle = backbone_spec_for(
        bundle,
        clip=flags["model"],
        pretrained=flags.get("pretrained"),
        checkpoint=flags.get("checkpoint"),
        cache_dir=tmp_path / "cache",
    )
    assert config.backbone_spec() == from_bundle


def test_a_trained_model_reloads_its_backbone_from_the_recorded_spec(tmp_path: Path) -> None:
    backbone = load_backbone(TINY_RANDOM, device="cpu")
    matrix = made_up_matrix(n=40).with_meta(backbone_id=backbone.backbone_id, backbone=backbone.spec)
    train_model(matrix, tmp_path / "model", n_estimators=3)
    bundle = load_bundle(tmp_path / "model")
    assert bundle.manifest.backbone == backbone.spec
    spec = backbone_spec_for(bundle, cache_dir=tmp_path / "cache")
    assert spec.model == TINY_RANDOM and spec.load(device="cpu").backbone_id == bundle.manifest.backbone_id


# --- no dict reads come back -------------------------------------------------------------------------------------


def test_no_module_reads_the_sidecar_or_manifest_by_key() -> None:
    pattern = re.compile(r"""\.(meta|manifest)(\[["']|\.get\()""")
    others = PACKAGE / "models" / "methods"  # being rewritten by others; listed in the report instead
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if others not in path.parents
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []
