"""The synthetic world: its specification, renderer, ground truth, true tree, and the world CLIP's training script
and loading path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conceptforest.errors import BadInputError
from conceptforest.world import AttributeKey, load_world, make_world_images, read_truth, render
from conceptforest.world.render import REMOVABLE_PARTS
from conceptforest.world.sample import GROUND_TRUTH_FILE, creature_for


def test_the_packaged_world_has_invented_classes_and_a_true_tree() -> None:
    world = load_world()
    assert 20 <= len(world.labels) <= 50
    tree = world.true_tree()
    assert tree.labels == world.labels and tree.domain == "creature"
    ids = {c.id for c in tree.concepts()}
    assert world.distinguishing_concepts() <= ids
    constant = [c for c in tree.concepts() if c.part_path == "eye"]
    nuisance = [c for c in tree.concepts() if c.part_path == "background"]
    assert constant and nuisance
    assert all(set(c.labels) == set(world.labels) for c in constant + nuisance)  # they cannot tell labels apart
    # some classes differ in one slot only, some in several; some values are shared by many classes
    distances = [
        sum(a.value(k) != b.value(k) for k in world.slots())
        for i, a in enumerate(world.classes)
        for b in world.classes[i + 1 :]
    ]
    assert min(distances) == 1 and max(distances) >= 5
    assert max(len(c.labels) for c in tree.concepts() if c.part_path not in ("eye", "background")) >= 10


def test_a_broken_specification_is_refused_with_the_file_named(tmp_path: Path) -> None:
    data = json.loads((Path(__file__).parents[1] / "conceptforest" / "data" / "world.json").read_text())
    data["classes"][1]["values"] = data["classes"][0]["values"]  # two classes no image could tell apart
    path = tmp_path / "world.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=r"world\.json.*same part values"):
        load_world(path)


def test_rendering_is_deterministic_and_interventions_change_only_their_part() -> None:
    world = load_world()
    creature = creature_for(world, world.labels[0], np.random.default_rng(3))
    first = np.asarray(render(creature), dtype=np.int16)
    assert np.array_equal(first, np.asarray(render(creature), dtype=np.int16))
    key = AttributeKey("body", "colour")
    other = next(v for v in world.values(key) if v != creature.value("body", "colour"))
    changed = np.asarray(render(creature.with_value(key, other)), dtype=np.int16)
    moved = np.abs(changed - first).sum(axis=2) > 30
    assert 0.05 < moved.mean() < 0.5, f"a body colour change moved {moved.mean():.3f} of the pixels"
    for part in REMOVABLE_PARTS:
        removed = np.asarray(render(creature.without(part)), dtype=np.int16)
        share = float((np.abs(removed - first).sum(axis=2) > 30).mean())
        assert 0.002 < share < 0.2, f"removing the {part} changed {share:.4f} of the pixels"
    with pytest.raises(ValueError, match="cannot be removed"):
        creature.without("body")


def test_world_images_carry_their_ground_truth(tmp_path: Path) -> None:
    world = load_world()
    images = make_world_images(tmp_path, world, per_label=2, seed=5)
    assert len(images) == 2 * len(world.labels)
    truth = read_truth(tmp_path)
    assert set(truth) == {image.path for image in images}
    for image in images[:6]:
        assert (tmp_path / image.path).is_file()
        assert truth[image.path] == image.creature  # every value and nuisance round-trips
        world_class = world.world_class(image.path.split("/")[0])
        assert all(truth[image.path].values[k] == world_class.value(k) for k in world.slots())
    assert (tmp_path / GROUND_TRUTH_FILE).read_text().count("\n") == len(images)


def test_a_shortcut_ties_the_background_to_the_label(tmp_path: Path) -> None:
    world = load_world()
    backgrounds = world.nuisances["background"]
    tied = {label: backgrounds[i % len(backgrounds)] for i, label in enumerate(world.labels)}
    images = make_world_images(tmp_path, world, per_label=3, seed=1, shortcut=tied)
    assert all(image.creature.background == tied[image.creature.label or ""] for image in images)


def test_the_training_script_runs_and_its_model_loads_as_a_toy_world_backbone(tmp_path: Path) -> None:
    from conceptforest.features.backbone import load_backbone
    from conceptforest.world.train_clip import main

    out = tmp_path / "clip"
    args = ["--out", str(out), "--steps", "3", "--batch-size", "16", "--pool-pairs", "16", "--eval-images", "12"]
    assert main([*args, "--no-progress"]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["settings"]["steps"] == 3 and record["data"]["pool_images"] == 32
    assert set(record["metrics"]["held_out_combinations"]["per_slot"]) == {
        *map(str, load_world().slots()),
        "background/colour",
    }
    backbone = load_backbone(f"local-dir:{out}")
    assert backbone.synthetic_world and not backbone.random_weights
    assert "TOY WORLD" in (backbone.weights_warning or "")
    embedding = backbone.encode_texts(["the colour of the beak is orange"])
    assert embedding.shape == (1, 64) and abs(float(np.linalg.norm(embedding)) - 1) < 1e-5


def test_the_packaged_world_clip_loads_by_its_short_name() -> None:
    from conceptforest.features.backbone import load_backbone, world_clip_folder
    from conceptforest.features.spec import BackboneSpec

    if not (world_clip_folder() / "open_clip_model.safetensors").is_file():
        pytest.fail("the packaged world CLIP is missing from conceptforest/data/world_clip")
    backbone = load_backbone("conceptforest-world")
    assert backbone.synthetic_world and backbone.backbone_id.startswith("local-dir__sha256-")
    same = load_backbone(f"local-dir:{world_clip_folder()}")
    assert same.backbone_id == backbone.backbone_id  # one cache for both names
    spec = backbone.spec
    assert spec.model == "conceptforest-world" and spec.synthetic_world
    assert spec.expected_id_prefix() == backbone.backbone_id.split("__pre-")[0] + "__"
    assert BackboneSpec.model_validate(spec.model_dump()).load().backbone_id == backbone.backbone_id
