"""The faithfulness benchmark's two checks that draw new images: interventions and the Clever-Hans shortcut.

Interventions (after FunnyBirds): per test image, the slot its explanation ranks first and the slot it ranks last
are each redrawn with another class's value (:func:`~conceptforest.world.faithfulness.replacement_value`); so is a
slot drawn at random (the baseline), and the unchanged creature is drawn again (the control). The new images go
through ``extract_features`` (the code that scored the training images: decode, preprocess, encode, cosine with
the concept sentences, unstandardised as the forest was trained) and the same forest or sparse head.

The shortcut: a forest trained where the background is tied to the label (``shortcut_backgrounds``), explained on
test images tied the same way (what a user who does not know of the shortcut would explain), and evaluated on the
clean, untied test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from conceptforest.world.faithfulness import (
    InterventionScore,
    ItemWeight,
    Responses,
    changeable_slots,
    extreme_slots,
    item_weight,
    replacement_value,
    shortcut_backgrounds,
    slot_name,
)
from conceptforest.world.faithfulness_run import (
    IMAGE_SIDE,
    Progress,
    Settings,
    WorldRun,
    fit_forest,
    group_matrix,
    per_image_explanations,
    write_manifest,
)
from conceptforest.world.render import Creature, render
from conceptforest.world.sample import WorldImage, make_world_images
from conceptforest.world.spec import NUISANCE_PART, AttributeKey

if TYPE_CHECKING:
    from conceptforest.explain.shap_values import ConceptShap
    from conceptforest.models.forest import ConceptForestClassifier

__all__ = ["InterventionPlan", "ShortcutResult", "intervention_scores", "plan_interventions", "shortcut_check"]

METHODS = ("shap", "sparse head")  # per-image explanations; SHAP explains the forest, the other the sparse head
BACKGROUND = NUISANCE_PART


@dataclass
class InterventionPlan:
    """The creatures to draw (by file stem, with the label their manifest row carries) and, per method and kind
    (``first``, ``last``, ``random``, ``same``), the stem each explained image's prediction is read from."""

    creatures: dict[str, tuple[Creature, str]]
    stems: dict[tuple[str, str], list[str]]
    constant_first: dict[str, int]  # per method: images whose explanation put a one-value slot above every other


def _slot_scores(run: WorldRun, contributions: np.ndarray) -> np.ndarray:
    """(rows x every slot) summed contributions, columns in ``run.groups['slot']`` order."""
    summed: np.ndarray = contributions @ group_matrix(run.matrix.concept_ids, run.groups["slot"])
    return summed


def plan_interventions(run: WorldRun, rows: list[int], seed: int) -> InterventionPlan:
    """For each test row: its first-, last-ranked and a random changeable slot redrawn, and the unchanged redraw."""
    slots = changeable_slots(run.spec)
    names = list(run.groups["slot"])
    columns = [names.index(slot_name(key)) for key in slots]
    by_method = {m: _slot_scores(run, contributions) for m, (_, contributions) in per_image_explanations(run).items()}
    plan = InterventionPlan({}, {}, dict.fromkeys(METHODS, 0))
    for n, row in enumerate(rows):
        creature, label = run.creatures[row], str(run.y_test[row])
        rng = np.random.default_rng([seed, n])

        def changed(key: AttributeKey, n: int = n, creature: Creature = creature, label: str = label) -> str:
            index = slots.index(key)
            value = replacement_value(run.spec, creature, key, np.random.default_rng([seed, n, index]))
            stem = f"{n:04d}-slot{index}"
            plan.creatures[stem] = (creature.with_value(key, value), label)
            return stem

        plan.creatures[f"{n:04d}-same"] = (creature, label)
        random_stem = changed(slots[int(rng.integers(len(slots)))])
        for method, values in by_method.items():
            scores = {key: float(values[row, column]) for key, column in zip(slots, columns, strict=True)}
            first, last = extreme_slots(scores, rng)
            plan.constant_first[method] += int(np.abs(values[row]).argmax() not in columns)
            for kind, stem in (("first", changed(first)), ("last", changed(last)), ("random", random_stem)):
                plan.stems.setdefault((method, kind), []).append(stem)
            plan.stems.setdefault((method, "same"), []).append(f"{n:04d}-same")
    return plan


def predict_creatures(run: WorldRun, plan: InterventionPlan) -> dict[str, dict[str, np.ndarray]]:
    """Draw every planned creature, score it with extract_features and predict it with the forest and the sparse
    head: method -> stem -> probabilities (in :func:`model_classes` order)."""
    from conceptforest.features.dataset import load_dataset
    from conceptforest.features.extract import extract_features

    folder = run.work / "interventions"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for stem, (creature, label) in plan.creatures.items():
        render(creature, IMAGE_SIDE).save(folder / f"{stem}.png")
        images.append(WorldImage(f"{stem}.png", replace(creature, label=label)))
    manifest = write_manifest(run.work / "interventions.csv", [(folder, images, "test")])
    dataset = load_dataset(manifest, labels=run.tree.labels)
    matrix, _ = extract_features(
        dataset, run.tree, run.backbone, run.work / "intervention-run", cache_dir=run.cache_dir, progress=False
    )
    stems = [Path(p).stem for p in matrix.frame["path"]]
    return {method: dict(zip(stems, _probabilities(run, method, matrix.X()), strict=True)) for method in METHODS}


def model_classes(run: WorldRun, method: str) -> list[str]:
    """The label order of the model a method explains (the forest for SHAP, else the sparse head)."""
    model = run.model if method == "shap" else run.head
    return [str(c) for c in model.classes_]


def _probabilities(run: WorldRun, method: str, X: pd.DataFrame) -> np.ndarray:
    proba: np.ndarray = (
        run.model.predict_proba(X) if method == "shap" else run.head.predict_proba(X.to_numpy(dtype=np.float64))
    )
    return proba


def _responses(classes: list[str], original: Sequence[str], proba: Sequence[np.ndarray]) -> Responses:
    """Labels (arg-max, as predict takes it) and the probability of each image's original prediction."""
    columns = [classes.index(label) for label in original]
    return Responses(
        labels=[classes[int(np.argmax(p))] for p in proba],
        original_probability=[float(p[c]) for p, c in zip(proba, columns, strict=True)],
    )


def intervention_scores(
    run: WorldRun, settings: Settings, say: Progress
) -> tuple[dict[str, InterventionScore], dict[str, int]]:
    """Per method, how its predictions respond to the interventions its per-image explanation picks; and per
    method, how many images had the constant slot ranked above every changeable one."""
    from conceptforest.explain.shap_values import report_shap_rows

    rows = list(report_shap_rows(list(run.y_test), settings.images).positions)  # taken in turn from each label
    plan = plan_interventions(run, rows, settings.seed)
    say(f"interventions: drawing and predicting {len(plan.creatures)} creatures for {len(rows)} test images")
    predicted = predict_creatures(run, plan)
    scores = {}
    for method in METHODS:
        classes = model_classes(run, method)
        test_proba = _probabilities(run, method, run.X_test.iloc[rows])
        original = [classes[int(np.argmax(p))] for p in test_proba]
        kinds = {
            kind: _responses(classes, original, [predicted[method][stem] for stem in plan.stems[(method, kind)]])
            for kind in ("first", "last", "random", "same")
        }
        scores[method] = InterventionScore.from_responses(
            _responses(classes, original, list(test_proba)),
            kinds["first"],
            kinds["last"],
            kinds["random"],
            kinds["same"],
        )
    return scores, plan.constant_first


# -- the shortcut -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShortcutResult:
    """The Clever-Hans check: accuracies and the background part's weight in each explanation, clean vs shortcut.

    ``background_clean`` / ``background_shortcut``: per explanation (grouped permutation, SHAP, Gini, at part
    level), the background's rank among the parts and share of the importance, for the clean forest on its test
    images and for the shortcut forest on tied test images. ``finding_*``: the sentence of the report's warning
    about parts every label has that the model leans on, or None where it did not fire."""

    backgrounds: dict[str, str]
    rate: float
    accuracy_clean_untied: float
    accuracy_shortcut_tied: float
    accuracy_shortcut_untied: float
    background_clean: dict[str, ItemWeight]
    background_shortcut: dict[str, ItemWeight]
    finding_clean: str | None  # the report's shortcut warning (explain/shortcuts.py) on each forest, if it fired
    finding_shortcut: str | None


def background_weights(
    model: ConceptForestClassifier,
    X: pd.DataFrame,
    y: np.ndarray,
    shap: ConceptShap,
    run: WorldRun,
    settings: Settings,
) -> tuple[dict[str, ItemWeight], str | None]:
    """The background part's rank and share in the part-level grouped permutation, SHAP and Gini rankings, and
    the report's shortcut warning on the same grouped permutation table (None when it does not fire)."""
    from conceptforest.explain.importance import gini_table, group_permutation_table
    from conceptforest.explain.shortcuts import shared_parts, shortcut_sentence

    groups = run.groups["part"]
    table = group_permutation_table(model, X, list(y), groups, n_repeats=settings.repeats, random_state=settings.seed)
    finding = shortcut_sentence(table, shared_parts(run.matrix.concepts, run.matrix.labels), len(X))
    ids = list(map(str, X.columns))
    gini = gini_table(model, ids).set_index("concept")["gini"].reindex(ids).to_numpy() @ group_matrix(ids, groups)
    rankings = {
        "grouped permutation": dict(zip(table["group"], table["mean"], strict=True)),
        "shap": shap.grouped(groups).mean_abs().sum(axis=1).to_dict(),
        "gini": dict(zip(groups, gini, strict=True)),
    }
    weights = {method: item_weight(scores, BACKGROUND) for method, scores in rankings.items()}
    return weights, None if finding is None else finding[0]


def shortcut_check(run: WorldRun, settings: Settings, say: Progress) -> ShortcutResult:
    """Train on tied backgrounds, explain on tied test images, evaluate on the clean run's untied test images."""
    from conceptforest.explain.shap_values import explain_shap

    tied = shortcut_backgrounds(run.spec)
    work, spec, rate = run.work, run.spec, settings.shortcut_rate
    say(f"Clever Hans: rendering tied images (rate {rate:g}), extracting and training")
    train = make_world_images(
        work / "shortcut-train", spec, per_label=settings.per_label, seed=settings.seed + 2, shortcut=tied,
        shortcut_rate=rate, size=IMAGE_SIDE,
    )  # fmt: skip
    tied_test = make_world_images(
        work / "tied-test", spec, per_label=settings.test_per_label, seed=settings.seed + 3, shortcut=tied,
        shortcut_rate=rate, size=IMAGE_SIDE,
    )  # fmt: skip
    parts = [(work / "shortcut-train", train, "train"), (work / "tied-test", tied_test, "test")]
    manifest = write_manifest(work / "shortcut.csv", [*parts, (work / "test", run.test_images, "val")])
    matrix, model = fit_forest(manifest, run.tree, run.backbone, work / "shortcut-run", settings, run.cache_dir)
    X_tied, y_tied = matrix.X("test"), matrix.y("test").astype(str).to_numpy()
    X_untied, y_untied = matrix.X("val"), matrix.y("val").astype(str).to_numpy()
    say("Clever Hans: explaining both forests by part")
    clean, clean_finding = background_weights(run.model, run.X_test, run.y_test, run.shap, run, settings)
    shortcut, finding = background_weights(model, X_tied, y_tied, explain_shap(model, X_tied), run, settings)
    return ShortcutResult(
        backgrounds=tied,
        rate=rate,
        accuracy_clean_untied=float(np.mean(run.model.predict(run.X_test).astype(str) == run.y_test)),
        accuracy_shortcut_tied=float(np.mean(model.predict(X_tied).astype(str) == y_tied)),
        accuracy_shortcut_untied=float(np.mean(model.predict(X_untied).astype(str) == y_untied)),
        background_clean=clean,
        background_shortcut=shortcut,
        finding_clean=clean_finding,
        finding_shortcut=finding,
    )
