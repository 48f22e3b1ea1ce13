"""Real behaviour on the synthetic creature world, with the small CLIP trained on it (``conceptforest-world``).

Until the world existed every test could only assert what holds for random weights. Here the embedding model
really sees, and the world's ground truth is known, so the tests assert what each method should do: the concept
forest on the true tree is accurate; name-only zero-shot CLIP is near chance (the class names are invented and
never appear in the world CLIP's training captions); DCLIP and CuPL with the true descriptors beat it clearly and
WaffleCLIP's random words do not; the controls lose to the forest; the grounding check detects the true concepts
and flags the ones a wrong tree misassigns; description optimisation with an LLM that knows the world raises
held-out accuracy; and WDYS fusion with a vision LLM that reports each image's parts beats image-only.

Each threshold sits below the value measured when the test was written (stated in the message), with slack for
other platforms' numerics; the margins are toy-world numbers, not accuracy on photos. One world run (render,
extract, train, every method) is shared by the module. Two expectations do not hold on this world (the controls
tie with the forest; WDYS's description part lowers accuracy): those tests are strict xfails whose reasons give
the measured values and why, so that a change that makes them hold is noticed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.optimize import OptimizeSettings, optimize_descriptors
from conceptforest.explain.grounding import DETECTED_AUC, grounding_table
from conceptforest.features.fewshot import few_shot_images
from conceptforest.llm.vision import OpenAIVisionLLM
from conceptforest.models.methods.base import MethodResult, run_methods
from conceptforest.models.methods.table import mcnemar_exact
from conceptforest.models.methods.wdys import WdysRun, image_paths, run_wdys
from conceptforest.world.descriptors import class_phrases, poor_descriptor_set
from conceptforest.world.spec import AttributeKey
from tests.llm_stub import StubServer
from tests.world_helpers import (
    WorldLLMLog,
    WorldRun,
    build_world_run,
    start_world_vision,
    swapped_tree,
    world_mutation,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorldRun]:
    base = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:  # the module's run writes nothing outside its folder
        patch.setenv("CONCEPTFOREST_HOME", str(base / "home"))
        yield build_world_run(base)


def chance(world: WorldRun) -> float:
    return 1.0 / len(world.spec.labels)


# -- 1. the concept forest -----------------------------------------------------------------------------------------


def test_the_concept_forest_on_the_true_tree_is_accurate(world: WorldRun) -> None:
    accuracy = world.accuracy("forest")
    low = float(world.table.loc["forest", "ci95_low"])
    assert accuracy >= 0.95, f"forest test accuracy {accuracy:.3f} (measured 1.000 when written)"
    assert low >= 0.90, f"forest accuracy's 95 % interval starts at {low:.3f} (measured 1.000 when written)"


# -- 2-4. zero-shot from names, descriptions, random words ---------------------------------------------------------


def test_name_only_zero_shot_clip_is_near_chance(world: WorldRun) -> None:
    accuracy = world.accuracy("clip")
    assert accuracy <= 3 * chance(world), (
        f"name-only CLIP accuracy {accuracy:.3f}, chance {chance(world):.3f} (measured 0.037 when written): the "
        "class names are invented and never in the world CLIP's captions"
    )


@pytest.mark.parametrize("method", ["dclip", "cupl"])
def test_true_descriptions_beat_name_only_zero_shot_clearly(world: WorldRun, method: str) -> None:
    gain = world.accuracy(method) - world.accuracy("clip")
    p_value = mcnemar_exact(world.test_truth, world.result("clip").predicted, world.result(method).predicted)
    assert gain >= 0.60, f"{method} gains {gain:.3f} over name-only CLIP (measured dclip 0.917, cupl 0.870)"
    assert p_value < 1e-6, f"McNemar p {p_value:.2g} of {method} against name-only CLIP (measured 3e-83, 5e-79)"


def test_waffle_random_words_do_not_beat_name_only_zero_shot_clearly(world: WorldRun) -> None:
    waffle = world.result("waffle")
    assert waffle.accuracy_mean is not None and waffle.accuracy_std is not None
    gain = waffle.accuracy_mean - world.accuracy("clip")
    assert gain <= 0.05, (
        f"WaffleCLIP's mean over seeds gains {gain:.3f} (std {waffle.accuracy_std:.3f}) over name-only CLIP "
        "(measured 0.023, std 0.014, when written; McNemar p 0.15 for seed 0)"
    )
    best_description = max(world.accuracy("dclip"), world.accuracy("cupl"))
    assert waffle.accuracy_mean <= best_description - 0.50, (
        f"WaffleCLIP {waffle.accuracy_mean:.3f} against the true descriptions' {best_description:.3f} "
        "(measured 0.060 and 0.953 when written)"
    )


# -- 5. the controls -----------------------------------------------------------------------------------------------

CONTROLS_TIE = (
    "measured: random-words 0.997 and shuffled-tree 1.000, the forest 1.000 (McNemar p 1.0) on 300 test images. "
    "A world class's images differ only in nuisances, so each class is a tight cluster in the world CLIP's "
    "64-dimensional embedding, and a forest on cosines with any 30 (random-words) or 184 (shuffled-tree) text "
    "directions separates the 30 clusters as well as the true concepts do."
)


@pytest.mark.parametrize(
    "control",
    [
        pytest.param("random-words", marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=CONTROLS_TIE)),
        pytest.param("shuffled-tree", marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=CONTROLS_TIE)),
    ],
)
def test_the_controls_lose_to_the_forest(world: WorldRun, control: str) -> None:
    p_value = float(world.table.loc[control, "mcnemar_p_vs_forest"])
    accuracy, forest = world.accuracy(control), world.accuracy("forest")
    assert accuracy < forest, (
        f"{control} {accuracy:.3f} against the forest's {forest:.3f} (measured 0.997 / 1.000 and 1.000)"
    )
    assert p_value < 0.05, f"McNemar p of {control} against the forest: {p_value:.2g} (measured 1.0 when written)"


# -- 6. grounding --------------------------------------------------------------------------------------------------


def test_grounding_detects_the_true_concepts(world: WorldRun) -> None:
    table = grounding_table(world.matrix)
    checkable = table.dropna(subset=["auc"])
    assert set(checkable["concept"]) == world.spec.distinguishing_concepts()  # shared and nuisance ones: no AUC
    worst = checkable.iloc[0]
    median = float(checkable["auc"].median())
    assert bool(checkable["detected"].all()), f"not detected: {checkable[~checkable['detected']].to_dict('records')}"
    assert worst.auc >= 0.95, (
        f"least detected true concept {worst.concept}: AUC {worst.auc:.4f} (measured wings:pattern=striped 0.978)"
    )
    assert median >= 0.99, f"median AUC of the true concepts {median:.4f} (measured 1.000 when written)"


def test_grounding_flags_the_concepts_a_wrong_tree_assigns_to_the_wrong_labels(world: WorldRun) -> None:
    body = AttributeKey("body", "colour")
    wrong = swapped_tree(world.spec, body, "red", "green")  # every red class said green, every green class red
    moved = {"body:colour=red", "body:colour=green"}
    true_auc = grounding_table(world.matrix).set_index("concept")["auc"].dropna()
    wrong_auc = grounding_table(world.features(wrong, "wrong-tree")).set_index("concept")["auc"].dropna()
    detected = set(true_auc.index[true_auc >= DETECTED_AUC])
    assert moved <= detected
    flagged = {concept for concept in detected if wrong_auc[concept] < DETECTED_AUC}  # what the report calls not seen
    assert flagged == moved, f"flagged {sorted(flagged)}; AUCs under the wrong tree: {wrong_auc.round(3).to_dict()}"
    for concept in moved:
        drop = true_auc[concept] - wrong_auc[concept]
        assert drop >= 0.30, (
            f"{concept}: AUC {true_auc[concept]:.3f} under the true tree, {wrong_auc[concept]:.3f} under the wrong "
            "one (measured red 1.000 -> 0.187, green 1.000 -> 0.262 when written)"
        )
    untouched = true_auc.index.difference(sorted(moved))
    np.testing.assert_allclose(wrong_auc[untouched], true_auc[untouched], atol=1e-9)  # the rest: unchanged


# -- 7. description optimisation with visual feedback --------------------------------------------------------------


def confused_count(feedback: list[str]) -> int:
    """How many labels the optimiser's feedback texts (one per group) call confused."""
    return sum(" is confused with: " in line for text in feedback for line in text.splitlines())


def test_optimisation_with_a_world_knowing_llm_raises_held_out_accuracy(
    world: WorldRun, stub: StubServer, tmp_path: Path
) -> None:
    log = WorldLLMLog()
    stub.state.answers["optimize_mutation"] = world_mutation(world.spec, log)
    llm = LLMClient(
        "world-llm-stub", base_url=stub.base_url, api_key="x", timeout=10.0, cache_dir=tmp_path, sleep=lambda s: None
    )
    images, skipped = few_shot_images(world.dataset, world.backbone, shots=8, seed=0, cache_dir=world.cache)
    assert not skipped
    poor = poor_descriptor_set(world.spec)
    settings = OptimizeSettings(iterations=3, candidates=2, seed=42)
    optimised = optimize_descriptors(images, llm, start=poor, settings=settings, progress=False)
    record = optimised.optimization
    assert record is not None and record.start_accuracy is not None

    # held out: the test split, which the optimisation never saw (the method also refuses a set tuned on it)
    test_keys = set(world.matrix.frame.loc[world.matrix.frame["split"] == "test", "sha256"])
    assert not test_keys & set(record.image_sha256)
    (scored,) = run_methods(replace(world.inputs, descriptors={"optimized": optimised}), ["optimized"])
    (start,) = run_methods(replace(world.inputs, descriptors={"dclip": poor}), ["dclip"])
    assert isinstance(scored, MethodResult) and isinstance(start, MethodResult), (scored, start)
    after = float(np.mean(scored.predicted == world.test_truth))
    before = float(np.mean(start.predicted == world.test_truth))
    # measured with the authors' raw logit scale (issue 19; the world CLIP's parameter is 2.947); with exp (19.05),
    # the scale used before, the same run measured 0.040 -> 0.877 held out, 0.054 -> 0.817 train, 28 and 5 confused
    assert after - before >= 0.60, (
        f"held-out accuracy {before:.3f} -> {after:.3f} (measured 0.040 -> 0.953 when written); train accuracy "
        f"{record.start_accuracy:.3f} -> {record.best_accuracy:.3f} (measured 0.054 -> 0.963)"
    )

    # the loop sent its feedback: the stub changes only labels the prompt calls confused, and it did change some
    assert any(log.changed), "the stub never saw a confused label"
    for feedback, changed in zip(log.feedback, log.changed, strict=True):
        assert changed <= {label for label, others in feedback.items() if others}
    first, last = confused_count(record.iterations[0].feedback), confused_count(record.iterations[-1].feedback)
    assert last < first, f"confused labels in the feedback: {first} at first, {last} at the end (measured 30 and 9)"
    # ... and kept the improvements: the best accuracy never drops, and the set returned is made of true phrases
    best = [iteration.best_accuracy for iteration in record.iterations]
    assert best == sorted(best) and record.best_accuracy > record.start_accuracy
    for label, descriptors in optimised.descriptors.items():
        true = set(class_phrases(world.spec, label))
        assert set(descriptors) <= true or descriptors == list(poor.descriptors[label]), (label, descriptors)


# -- 8. WDYS fusion ------------------------------------------------------------------------------------------------

WDYS_LOSES = (
    "measured on 300 test images with the default class weight, the authors' README configuration (the mean of "
    "the CuPL sentences): image only 0.907, image + description 0.877, image + guess 0.947, all three 0.933. The "
    "whole 8-part description reaches the model (25 of its 48 tokens) and alone reaches 0.867 against that weight, "
    "but the image alone already does better (0.907), so adding the description does not help. With our "
    "three-part sum (label name + 'A photo of {label}' + descriptions, --wdys-class-weight sum; the only weight "
    "before) the four were 0.263, 0.223, 0.287 and 0.290 (the description alone 0.233): the name texts, which the "
    "world CLIP never saw, drown what is seen."
)


@pytest.fixture(scope="module")
def wdys(world: WorldRun, tmp_path_factory: pytest.TempPathFactory) -> WdysRun:
    """WDYS on the test split with a vision LLM (over HTTP) that reports each image's true parts and guesses
    nothing useful ("a bird": the class names mean nothing to it either)."""
    server = start_world_vision(world.spec, world.root, image_paths(world.inputs), guess="a bird")
    cache = tmp_path_factory.mktemp("vision-cache")
    try:
        vision = OpenAIVisionLLM(
            "world-vision-stub", base_url=server.base_url, api_key="x", cache_dir=cache, sleep=lambda s: None
        )
        run = run_wdys(replace(world.inputs, vision_llm=vision))
    finally:
        server.shutdown()
        server.server_close()
    assert server.state.unknown == 0, "the vision client sent an image the stub was not told about"
    return run


def test_wdys_asks_about_every_test_image_and_leaves_nothing_out(world: WorldRun, wdys: WdysRun) -> None:
    assert len(wdys.answers.descriptions) == len(world.test_truth)
    assert [answer.error for answer in wdys.answers.descriptions] == [None] * len(world.test_truth)
    assert int(wdys.ablation["answers left out"].sum()) == 0
    assert all(answer.text.endswith("legs") for answer in wdys.answers.descriptions)  # the whole true description


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=WDYS_LOSES)
def test_wdys_with_a_vision_llm_that_reports_the_parts_beats_image_only(world: WorldRun, wdys: WdysRun) -> None:
    ablation = wdys.ablation.set_index("query")
    image_only = float(ablation.loc["image", "accuracy"])
    described = float(ablation.loc["image + description", "accuracy"])
    fused = float(np.mean(wdys.result.predicted == world.test_truth))
    assert described - image_only >= 0.05, (
        f"image only {image_only:.3f}, image + description {described:.3f} (measured 0.907 and 0.877 with the "
        "descriptions-only class weight; 0.263 and 0.223 with the three-part sum before it)"
    )
    assert fused - image_only >= 0.05, (
        f"image only {image_only:.3f}, all three parts {fused:.3f} (measured 0.907 and 0.933 with the "
        "descriptions-only class weight; 0.263 and 0.290 with the three-part sum before it)"
    )
