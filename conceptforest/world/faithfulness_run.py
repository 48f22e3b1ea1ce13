"""The faithfulness benchmark's runs on the world: data sets, the stages, and every explanation's scores.

``benchmarks/faithfulness.py`` drives these and turns the returned dataclasses into JSON; the scoring rules are
in :mod:`conceptforest.world.faithfulness`. The stages are the pipeline's own (``extract_features``,
``train_model``, the explanation functions, the method registry), run on a manifest so that the split is ours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from conceptforest.defaults import WORLD_CLIP
from conceptforest.world.faithfulness import (
    LEVELS,
    Level,
    RankingScore,
    RankingSummary,
    WorldTruth,
    descriptor_grounding,
    level_groups,
    score_ranking,
    score_rows,
    summarize,
)
from conceptforest.world.render import Creature
from conceptforest.world.sample import WorldImage, make_world_images
from conceptforest.world.spec import WorldSpec

if TYPE_CHECKING:
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.explain.shap_values import ConceptShap
    from conceptforest.features.backbone import Backbone
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.models.forest import ConceptForestClassifier
    from conceptforest.models.methods.concept import SparseConceptHead

__all__ = [
    "ExplanationScores",
    "Progress",
    "Settings",
    "WorldRun",
    "explanation_scores",
    "fit_forest",
    "group_matrix",
    "per_image_explanations",
    "train_world",
    "write_manifest",
]

Progress = Callable[[str], None]
IMAGE_SIDE = 112  # make_world_images' default, and the side every re-rendered creature is drawn at


@dataclass(frozen=True)
class Settings:
    """Sizes and seeds of one benchmark run; :meth:`quick` is the test's small run."""

    per_label: int = 30
    test_per_label: int = 10
    images: int = 120
    seed: int = 0
    trees: int = 500
    repeats: int = 10
    shortcut_rate: float = 1.0
    clip: str = WORLD_CLIP

    def quick(self) -> Settings:
        return replace(self, per_label=8, test_per_label=4, images=30, trees=100, repeats=3)


@dataclass
class WorldRun:
    """The clean world run: its matrix, forest, sparse head, SHAP values and truth, with the test creatures."""

    spec: WorldSpec
    tree: ConceptTree
    backbone: Backbone
    work: Path
    matrix: FeatureMatrix
    model: ConceptForestClassifier
    head: SparseConceptHead
    shap: ConceptShap
    truth: WorldTruth
    test_images: list[WorldImage]
    creatures: list[Creature]  # of the test rows, in row order
    groups: dict[Level, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def X_test(self) -> pd.DataFrame:
        return self.matrix.X("test")

    @property
    def y_test(self) -> np.ndarray:
        labels: np.ndarray = self.matrix.y("test").astype(str).to_numpy()
        return labels

    @property
    def cache_dir(self) -> Path:
        return self.work / "cache"


def write_manifest(path: Path, parts: Sequence[tuple[Path, Sequence[WorldImage], str]]) -> Path:
    """A CSV manifest (path,label,split) of written world images: (root, images, split) per part."""
    rows = [
        (str((root / image.path).resolve()), image.creature.label, split)
        for root, images, split in parts
        for image in images
    ]
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(path, index=False)
    return path


def fit_forest(
    manifest: Path, tree: ConceptTree, backbone: Backbone, out: Path, settings: Settings, cache_dir: Path
) -> tuple[FeatureMatrix, ConceptForestClassifier]:
    """extract_features then train_model (saved in ``out/model``), as the pipeline runs them."""
    from conceptforest.features.dataset import load_dataset
    from conceptforest.features.extract import extract_features
    from conceptforest.models.train import train_model

    dataset = load_dataset(manifest, labels=tree.labels, seed=settings.seed)
    matrix, _ = extract_features(dataset, tree, backbone, out, cache_dir=cache_dir, progress=False)
    bundle = train_model(matrix, out / "model", n_estimators=settings.trees, random_state=settings.seed)
    return matrix, bundle.model


def _creatures(matrix: FeatureMatrix, split: str, root: Path, images: Sequence[WorldImage]) -> list[Creature]:
    by_path = {str((root / image.path).resolve()): image.creature for image in images}
    return [by_path[str(Path(p).resolve())] for p in matrix.rows(split)["path"]]


def train_world(spec: WorldSpec, work: Path, settings: Settings, say: Progress) -> WorldRun:
    """Render the clean world (random backgrounds), extract, train the forest and the sparse head, explain."""
    from conceptforest.explain.shap_values import explain_shap
    from conceptforest.features.backbone import load_backbone
    from conceptforest.models.methods.concept import SparseConceptHead

    tree = spec.true_tree()
    say(f"rendering {settings.per_label} train and {settings.test_per_label} test images per class")
    train = make_world_images(work / "train", spec, per_label=settings.per_label, seed=settings.seed, size=IMAGE_SIDE)
    test = make_world_images(
        work / "test", spec, per_label=settings.test_per_label, seed=settings.seed + 1, size=IMAGE_SIDE
    )
    backbone = load_backbone(settings.clip)
    manifest = write_manifest(work / "clean.csv", [(work / "train", train, "train"), (work / "test", test, "test")])
    say(f"extracting features with {backbone.backbone_id} and training a forest of {settings.trees} trees")
    matrix, model = fit_forest(manifest, tree, backbone, work / "clean-run", settings, work / "cache")
    say("fitting the sparse head and computing SHAP on the test rows")
    head = SparseConceptHead(random_state=settings.seed)
    head.fit(matrix.X("train").to_numpy(dtype=np.float64), matrix.y("train").astype(str).to_numpy())
    return WorldRun(
        spec=spec,
        tree=tree,
        backbone=backbone,
        work=work,
        matrix=matrix,
        model=model,
        head=head,
        shap=explain_shap(model, matrix.X("test")),
        truth=WorldTruth.of(spec, tree),
        test_images=test,
        creatures=_creatures(matrix, "test", work / "test", test),
        groups={level: level_groups(matrix.concepts, level) for level in LEVELS},
    )


def group_matrix(concept_ids: Sequence[str], groups: dict[str, list[str]]) -> np.ndarray:
    """(concepts x groups) 0/1 membership, so that ``values @ matrix`` sums each group's concepts."""
    index = {c: i for i, c in enumerate(concept_ids)}
    membership = np.zeros((len(concept_ids), len(groups)))
    for g, members in enumerate(groups.values()):
        membership[[index[m] for m in members], g] = 1.0
    return membership


def head_weights(run: WorldRun) -> pd.DataFrame:
    """|weight| of each concept for each label (rows: concepts, columns: labels) on the standardised scale."""
    return pd.DataFrame(np.abs(run.head.coef_).T, index=run.matrix.concept_ids, columns=run.head.classes_.astype(str))


def head_contributions(run: WorldRun) -> tuple[np.ndarray, np.ndarray]:
    """The sparse head's predicted labels on the test rows and each concept's weight x standardised score for
    that label (rows x concepts): the per-image explanation of the ``sparse`` method, every concept kept."""
    X = run.X_test.to_numpy(dtype=np.float64)
    predicted = run.head.predict(X).astype(str)
    classes = list(run.head.classes_.astype(str))
    weights = run.head.coef_[[classes.index(label) for label in predicted]]
    return predicted, weights * run.head.standardize(X)


def per_image_explanations(run: WorldRun) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per explaining method (``shap`` for the forest, ``sparse head``): test-row predictions and contributions."""
    return {"shap": forest_contributions(run), "sparse head": head_contributions(run)}


def forest_contributions(run: WorldRun) -> tuple[np.ndarray, np.ndarray]:
    """The forest's predicted labels on the test rows and each concept's SHAP value for that label."""
    predicted = run.model.predict(run.X_test).astype(str)
    columns = [run.shap.classes.index(label) for label in predicted]
    return predicted, run.shap.values[np.arange(len(predicted)), :, columns]


@dataclass(frozen=True)
class ExplanationScores:
    """Every explanation's ranking scores: global (one ranking), per label and per image (summaries)."""

    global_scores: dict[tuple[str, Level], RankingScore]
    per_label: dict[tuple[str, Level], RankingSummary]
    per_image: dict[tuple[str, Level], RankingSummary]
    dclip: RankingSummary
    accuracy: dict[str, float]


def global_rankings(run: WorldRun, settings: Settings) -> dict[tuple[str, Level], dict[str, float]]:
    """Each method's global scores per item at each level it offers."""
    from conceptforest.explain.importance import gini_table, group_permutation_table, permutation_table

    X, y, ids = run.X_test, list(run.y_test), run.matrix.concept_ids
    seeds: dict[str, Any] = {"n_repeats": settings.repeats, "random_state": settings.seed}
    found: dict[tuple[str, Level], dict[str, float]] = {}
    single = permutation_table(run.model, X, y, **seeds)
    found[("permutation", "concept")] = dict(zip(single["concept"], single["mean"], strict=True))
    for level in ("part", "slot"):
        table = group_permutation_table(run.model, X, y, run.groups[level], **seeds)
        found[("grouped permutation", level)] = dict(zip(table["group"], table["mean"], strict=True))
    gini = gini_table(run.model, ids).set_index("concept")["gini"].reindex(ids).to_numpy()
    weights = head_weights(run).sum(axis=1).to_numpy()
    for level in LEVELS:
        groups = run.groups[level]
        membership = group_matrix(ids, groups)
        found[("gini", level)] = dict(zip(groups, gini @ membership, strict=True))
        found[("shap", level)] = run.shap.grouped(groups).mean_abs().sum(axis=1).to_dict()
        found[("sparse head", level)] = dict(zip(groups, weights @ membership, strict=True))
    return found


def per_label_rankings(run: WorldRun) -> dict[tuple[str, Level], RankingSummary]:
    """SHAP (the label's mean |SHAP|, as the report shades its tree) and the sparse head's |weights| per label."""
    found: dict[tuple[str, Level], RankingSummary] = {}
    labels, weights = run.matrix.labels, head_weights(run)
    for level in LEVELS:
        groups = run.groups[level]
        summed = group_matrix(run.matrix.concept_ids, groups).T @ weights.to_numpy()
        by_method = {
            "shap": run.shap.grouped(groups).mean_abs(),
            "sparse head": pd.DataFrame(summed, index=list(groups), columns=weights.columns),
        }
        for method, table in by_method.items():
            scores = []
            for label in labels:
                items = run.truth.items_of(level, label, groups)
                ranking = {item: float(table.at[item, label]) for item in items}
                scores.append(score_ranking(ranking, run.truth.relevant(level, label)))
            found[(method, level)] = summarize(scores)
    return found


def per_image_rankings(run: WorldRun) -> dict[tuple[str, Level], RankingSummary]:
    """Per test image, |contribution| to its predicted label: SHAP (forest) and weight x score (sparse head)."""
    found: dict[tuple[str, Level], RankingSummary] = {}
    ids = run.matrix.concept_ids
    for method, (predicted, contributions) in per_image_explanations(run).items():
        for level in LEVELS:
            groups = run.groups[level]
            grouped = np.abs(contributions @ group_matrix(ids, groups))
            relevant = [run.truth.relevant(level, label) for label in predicted]
            kept = [run.truth.items_of(level, label, groups) for label in predicted]
            found[(method, level)] = summarize(score_rows(grouped, list(groups), relevant, kept))
    return found


def dclip_grounding(run: WorldRun, settings: Settings) -> tuple[RankingSummary, float]:
    """DCLIP with the world's true descriptors: its per-image descriptor scores against what each image shows,
    and its test accuracy."""
    from conceptforest.models.methods import NotComputed, run_methods
    from conceptforest.models.methods.context import method_inputs
    from conceptforest.world.descriptors import true_descriptor_sets

    inputs = method_inputs(
        run.matrix,
        split="test",
        seed=settings.seed,
        tree=run.tree,
        descriptors=true_descriptor_sets(run.spec),
        backbone=run.backbone,
        cache_dir=run.cache_dir,
    )
    (outcome,) = run_methods(inputs, ["dclip"])
    if isinstance(outcome, NotComputed) or outcome.explanations is None:
        raise RuntimeError(f"DCLIP did not run: {getattr(outcome, 'hint', 'no explanations')}")
    accuracy = float(np.mean(outcome.predicted.astype(str) == run.y_test))
    return descriptor_grounding(outcome.explanations, run.creatures, run.spec), accuracy


def explanation_scores(run: WorldRun, settings: Settings, say: Progress) -> ExplanationScores:
    """Score every explanation of the clean run against the truth."""
    say("permutation importance (single and grouped), Gini, SHAP and sparse-head rankings")
    global_scores = {
        key: score_ranking(scores, run.truth.relevant(key[1])) for key, scores in global_rankings(run, settings).items()
    }
    say("DCLIP with the true descriptors")
    dclip, dclip_accuracy = dclip_grounding(run, settings)
    head_predicted, _ = head_contributions(run)
    accuracy = {
        "forest": float(np.mean(run.model.predict(run.X_test).astype(str) == run.y_test)),
        "sparse head": float(np.mean(head_predicted == run.y_test)),
        "dclip": dclip_accuracy,
    }
    return ExplanationScores(global_scores, per_label_rankings(run), per_image_rankings(run), dclip, accuracy)
