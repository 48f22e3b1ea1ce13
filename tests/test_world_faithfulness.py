"""Faithfulness scoring on the synthetic world: exact scores on hand-made rankings, and the benchmark's quick run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conceptforest.world import Creature, load_world
from conceptforest.world.faithfulness import (
    InterventionScore,
    RankingScore,
    Responses,
    WorldTruth,
    changeable_slots,
    descriptor_grounding,
    extreme_slots,
    item_weight,
    replacement_value,
    score_ranking,
    score_rows,
    shortcut_backgrounds,
    summarize,
)
from conceptforest.world.sample import creature_for
from conceptforest.world.spec import AttributeKey

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "faithfulness.py"
FIVE = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0}


def test_precision_and_recall_at_k_are_exact() -> None:
    score = score_ranking(FIVE, {"a", "c"})  # k = 2: the top two are a (relevant) and b (not)
    assert (score.k, score.precision, score.recall) == (2, 0.5, 0.5)
    assert score.auc == pytest.approx(5 / 6)  # a beats b, d, e; c beats d, e; c loses to b
    assert score.chance_precision == pytest.approx(2 / 5)
    wider = score_ranking(FIVE, {"a", "c"}, k=3)
    assert wider.precision == pytest.approx(2 / 3) and wider.recall == 1.0


def test_a_ranking_that_puts_the_nuisances_first_scores_zero() -> None:
    scores = {"background:colour=pale blue": 9.0, "eye:colour=black": 8.0, "body:colour=red": 1.0, "tail:shape=fan": 0}
    score = score_ranking(scores, {"body:colour=red", "tail:shape=fan"})
    assert (score.precision, score.recall, score.auc) == (0.0, 0.0, 0.0)
    perfect = score_ranking({name: -value for name, value in scores.items()}, {"body:colour=red", "tail:shape=fan"})
    assert (perfect.precision, perfect.auc) == (1.0, 1.0)


def test_ties_at_the_kth_place_count_as_a_random_draw_and_nan_ranks_last() -> None:
    assert score_ranking({"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0}, {"a"}).precision == pytest.approx(1 / 3)
    assert score_ranking({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}, {"a", "b"}).precision == pytest.approx(0.5)
    assert score_ranking({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, {"a", "b"}).auc == 0.0
    assert score_ranking({"a": float("nan"), "b": -5.0}, {"b"}).precision == 1.0


def test_relevant_ids_missing_from_the_ranking_are_an_error_not_a_miss() -> None:
    with pytest.raises(ValueError, match="body:colour=red"):
        score_ranking(FIVE, {"a", "body:colour=red"})
    with pytest.raises(ValueError, match="k must be"):
        score_ranking(FIVE, {"a"}, k=6)


def test_summaries_and_row_rankings() -> None:
    scores = [RankingScore(10, 4, 4, p, p, None) for p in (1.0, 0.75, 0.5)]
    summary = summarize(scores)
    assert summary.precision_mean == pytest.approx(0.75) and summary.precision_min == 0.5
    assert summary.share_meeting_aim == pytest.approx(1 / 3) and summary.auc_mean is None
    rows = score_rows(
        np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]), ["x", "y", "z"], [{"x"}, {"x"}], [{"x", "y"}, "xyz"]
    )
    assert [r.precision for r in rows] == [1.0, 0.0] and [r.items for r in rows] == [2, 3]


def test_the_truth_of_the_packaged_world() -> None:
    spec = load_world()
    tree = spec.true_tree()
    truth = WorldTruth.of(spec, tree)
    assert truth.parts == {"body", "beak", "crest", "wings", "tail", "legs"}
    assert "eye:colour" not in truth.slots and "background:colour" not in truth.slots and len(truth.slots) == 8
    assert truth.concepts == spec.distinguishing_concepts() and len(truth.concepts) == 24
    label = spec.labels[0]
    own = truth.items_of("concept", label, [])
    assert len(own) == 14  # 8 own values, the eye, 5 backgrounds
    assert truth.relevant("concept", label) == {c for c in own if not c.startswith(("eye:", "background:"))}


def test_interventions_change_a_changeable_slot_to_another_class_value() -> None:
    spec = load_world()
    slots = changeable_slots(spec)
    assert AttributeKey("eye", "colour") not in slots and AttributeKey("background", "colour") in slots
    rng = np.random.default_rng(0)
    creature = creature_for(spec, spec.labels[0], rng)
    for key in slots:
        value = replacement_value(spec, creature, key, rng)
        assert value != creature.values[key] and value in spec.values(key)
        if key.part != "background":
            assert value in {c.value(key) for c in spec.classes if c.name != spec.labels[0]}
    first, last = extreme_slots({slots[0]: 0.1, slots[1]: -0.9, slots[2]: 0.0}, rng)
    assert (first, last) == (slots[1], slots[2])  # by magnitude: a large negative contribution ranks first


def test_intervention_score_counts_moves_stays_and_probability_drops() -> None:
    def answers(labels: str, kept: list[float]) -> Responses:
        return Responses(labels=list(labels), original_probability=kept)

    score = InterventionScore.from_responses(
        original=answers("aabb", [0.9, 0.8, 0.7, 0.6]),
        first=answers("baac", [0.1, 0.8, 0.2, 0.3]),
        last=answers("aacb", [0.9, 0.7, 0.3, 0.6]),
        random=answers("aabc", [0.9, 0.8, 0.7, 0.2]),
        rerendered=answers("aabb", [0.9, 0.8, 0.7, 0.6]),
    )
    assert (score.first_moves, score.last_stays, score.agreement) == (0.75, 0.75, 0.5)
    assert (score.random_moves, score.rerender_same, score.images) == (0.25, 1.0, 4)
    assert score.first_drop == pytest.approx((0.8 + 0 + 0.5 + 0.3) / 4)
    assert score.last_drop == pytest.approx((0 + 0.1 + 0.4 + 0) / 4)
    assert score.random_drop == pytest.approx(0.1)
    assert score.first_over_last == 0.75  # image 2: the first-ranked change dropped less (0 < 0.1)


def test_the_shortcut_ties_backgrounds_evenly_and_apart_from_nearest_classes() -> None:
    spec = load_world()
    tied = shortcut_backgrounds(spec)
    assert sorted(pd.Series(tied).value_counts().tolist()) == [6] * 5
    shared = total = 0
    for label in spec.labels:
        distance = {o: sum(spec.world_class(label).value(k) != spec.world_class(o).value(k) for k in spec.slots())
                    for o in spec.labels if o != label}  # fmt: skip
        nearest = [o for o, d in distance.items() if d == min(distance.values())]
        shared, total = shared + sum(tied[o] == tied[label] for o in nearest), total + len(nearest)
    # measured: 2 of the 43 (label, nearest class) pairs share a background; a random tie shares about 1 in 5
    assert shared / total <= 0.1, f"{shared} of {total} nearest pairs share a background"


def test_item_weight_gives_rank_and_share() -> None:
    weight = item_weight({"body": 0.3, "background": 0.1, "eye": -0.05, "tail": 0.0}, "background")
    assert (weight.rank, weight.items) == (2, 4) and weight.share == pytest.approx(0.25)


def test_descriptor_grounding_ranks_what_the_image_shows() -> None:
    spec = load_world()
    creature = Creature(values={AttributeKey("body", "colour"): "red", AttributeKey("tail", "shape"): "fan"})
    evidence = pd.DataFrame(
        {
            "row": [0, 0, 0, 0],
            "label": ["x", "x", "y", "y"],
            "item": ["red body", "fan tail", "blue body", "forked tail"],
            "score": [0.4, 0.1, 0.3, 0.2],  # the shown "fan tail" ranks below two descriptors the image lacks
        }
    )
    summary = descriptor_grounding(evidence, [creature], spec)
    assert summary.rankings == 1 and summary.precision_mean == 0.5 and summary.auc_mean == 0.5


# -- the benchmark's quick run with the world CLIP ------------------------------------------------------------------


def _benchmark() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("faithfulness_benchmark", BENCHMARK)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _world_clip_present() -> bool:
    from conceptforest.features.backbone import world_clip_folder

    return (world_clip_folder() / "open_clip_config.json").is_file()


def _entry(entries: list[dict[str, Any]], method: str, level: str | None = None) -> dict[str, Any]:
    (found,) = [e for e in entries if e["method"] == method and (level is None or e["level"] == level)]
    return found


def test_the_quick_benchmark_scores_explanations_of_the_world_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conceptforest.explain.predict import ImagePrediction, predict_images
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.models import load_bundle

    assert _world_clip_present(), "the packaged world CLIP (conceptforest/data/world_clip) is missing"
    result = _benchmark().main(["--quick", "--work", str(tmp_path)])
    assert json.loads(capsys.readouterr().out) == result
    assert result["synthetic_world"] is True and "Toy-world numbers" in result["note"]
    # quick run, seed 0, measured: 0.833 (one part wrong; the default run: 1.0); chance 0.75
    grouped = _entry(result["global"], "grouped permutation", "part")
    assert grouped["precision_at_k"] >= 0.8, f"grouped permutation by part: {grouped}"
    # measured: 0.920 (the default run: 0.951); chance 0.8
    shap = _entry(result["per_image"], "shap", "slot")
    assert shap["precision_mean"] >= 0.9, f"per-image SHAP by slot: {shap}"
    # measured: the first-ranked slot's change lowers the forest's probability more than the last's on every
    # image (1.0), and more than a random slot's on average (0.516 vs 0.373)
    forest = _entry(result["interventions"], "shap")
    assert forest["rerender_same"] == 1.0, f"redrawing the unchanged creature must predict the same: {forest}"
    assert forest["first_over_last"] >= 0.9 and forest["first_drop"] > forest["random_drop"], forest
    # measured: the tied background's share of grouped importance 0.89 (rank 1 of 8) against 0.04 (rank 7) clean
    hans = result["clever_hans"]
    background = hans["background_part"]["grouped permutation"]
    assert background["shortcut"]["rank"] <= 2 < background["clean"]["rank"], background
    # measured after issue 19 item 7 (the interval is over test images now): on the quick run's 120 tied test
    # images the background's drop is 0.022 (rank 1 of 8, about 3 images), its 95 % interval over images
    # 0.000-0.047 reaches zero, so the warning does not fire; it fired under the old interval, the spread of the
    # 3 permutation repeats (repeat_std 0.004). Neither forest fires.
    assert hans["finding"]["fired_shortcut"] is False and hans["finding"]["fired_clean"] is False, hans["finding"]
    # the benchmark scores new images with extract_features; the tool's predict path must agree on them
    images = sorted((tmp_path / "interventions").glob("*.png"))[:4]
    matrix = FeatureMatrix.load(tmp_path / "intervention-run")
    bundle = load_bundle(tmp_path / "clean-run" / "model")
    rows = {path: i for i, path in enumerate(matrix.frame["path"])}
    proba = bundle.model.predict_proba(matrix.X())
    classes = [str(c) for c in bundle.model.classes_]
    for image, prediction in zip(images, predict_images(tmp_path / "clean-run" / "model", images), strict=True):
        assert isinstance(prediction, ImagePrediction), prediction
        row = rows[str(image.resolve())]
        for contribution in prediction.contributions:
            assert contribution.score == pytest.approx(matrix.X().iloc[row][contribution.concept], abs=1e-5)
        # the same probabilities and the same label as the forest's predict (ties go to the first class)
        assert prediction.label == classes[int(proba[row].argmax())], (image.name, prediction.label)
