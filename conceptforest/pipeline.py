"""The whole pipeline in one call: tree (cached), features (cached), forest, report.

Besides the CLI, this is the one module that knows all four stages.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from conceptforest.atomic import atomic_write_json
from conceptforest.cache import embedding_root
from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.generate import GenerationLimits, extend_tree, generate_tree
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.explain.build import explain_model, load_skipped
from conceptforest.explain.copies import Copies, find_copies
from conceptforest.explain.report import retire_report
from conceptforest.features.backbone import Backbone
from conceptforest.features.dataset import load_dataset
from conceptforest.features.extract import ExtractionStats, extract_features
from conceptforest.features.listed import list_images
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.folder_lock import folder_lock
from conceptforest.llm.vision_types import VisionLLM
from conceptforest.models.bundle import load_bundle
from conceptforest.models.methods import MethodInputs, MethodResult, Need, NotComputed, run_methods
from conceptforest.models.methods.context import method_inputs
from conceptforest.models.methods.wdys_weights import WdysClassWeight
from conceptforest.models.train import train_model

logger = logging.getLogger(__name__)

TREE_FILE = "tree.json"
REPORT_DIR = "report"
PREVIOUS_TREE_PATTERN = "tree.previous-{stamp}.json"


def save_run_tree(tree: ConceptTree, path: Path) -> None:
    """Write the run's tree; an existing, different tree is kept as ``tree.previous-<UTC time>.json``, never lost."""
    if path.is_file():
        try:
            old = ConceptTree.load(path)
        except BadInputError:
            old = None
        if old is not None and old.tree_hash() == tree.tree_hash():
            return
        previous = path.with_name(PREVIOUS_TREE_PATTERN.format(stamp=datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")))
        os.replace(path, previous)
        logger.warning("The run folder's previous tree was moved to %s.", previous)
    tree.save(path)


@dataclass
class RunResult:
    out_dir: Path
    tree: ConceptTree
    stats: ExtractionStats
    metrics: dict[str, Any]
    copies: Copies  # copies of one image among the run's rows (across the split: a flattered accuracy)

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report" / "index.html"

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "model"


def run_pipeline(
    images: str | Path,
    domain: str,
    out_dir: str | Path,
    *,
    backbone: Backbone,
    llm: LLMClient | None,
    labels: list[str] | None = None,
    tree: ConceptTree | None = None,
    limits: GenerationLimits | None = None,
    cache_dir: str | Path | None = None,
    n_estimators: int = 500,
    seed: int = 0,
    n_repeats: int = 10,
    method_names: Sequence[str] | None = None,
    descriptors: Sequence[DescriptorSet] = (),
    vision_llm: VisionLLM | None = None,
    wdys_class_weight: WdysClassWeight | None = None,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Images + domain → ``out_dir/{tree.json, trees/, features.parquet, model/, report/}``.

    Labels default to the image folder names. A given ``tree`` is extended with any labels it lacks.
    """
    out = Path(out_dir)
    with folder_lock(out), folder_lock(out / REPORT_DIR):  # one writer per run folder and its report
        embedding_root(cache_dir)  # a cache URI that cannot be opened fails before anything is written
        found = load_dataset(images, val_fraction=0, test_fraction=0).labels if labels is None else labels
        if tree is None:
            tree = generate_tree(domain, found, llm, limits=limits, progress=progress)
        elif missing := [label for label in found if label not in tree.labels]:
            tree = extend_tree(tree, missing, llm, progress=progress)
        # the old report describes the tree, features and model replaced below: a run stopped before its new
        # report must not leave it beside them
        retire_report(out / REPORT_DIR)
        if config is not None:  # the settings of what is replaced from here on
            atomic_write_json(out / "config.json", config)
        save_run_tree(tree, out / TREE_FILE)
        for descriptor_set in descriptors:  # beside the run, where explain and compare look by default
            descriptor_set.save(out / f"descriptors-{descriptor_set.style}.json")
        dataset = load_dataset(images, labels=tree.labels, seed=seed)
        matrix, stats = extract_features(dataset, tree, backbone, out, cache_dir=cache_dir, progress=progress)
        metrics = train_model(matrix, out / "model", n_estimators=n_estimators, random_state=seed).metrics
        bundle = load_bundle(out / "model")
        inputs = method_inputs(
            matrix,
            split="test",
            seed=seed,
            bundle=bundle,
            tree=tree,
            descriptors=descriptors,
            backbone=backbone,
            cache_dir=cache_dir,
            vision_llm=vision_llm,
            wdys_class_weight=wdys_class_weight,
            progress=progress,
        )
        explain_model(
            bundle,
            matrix,
            out / "report",
            tree=tree,
            skipped=load_skipped(out),
            methods=run_methods(inputs, method_names),
            descriptors=descriptors,
            n_repeats=n_repeats,
            random_state=seed,
            made_by={"run_dir": str(out), "model_dir": str(out / "model")},
        )
        copies = find_copies(matrix.frame, "test")
        return RunResult(out_dir=out, tree=tree, stats=stats, metrics=metrics, copies=copies)


def _zero_shot_outcome(inputs: MethodInputs, method: str) -> tuple[MethodResult, pd.DataFrame | None]:
    """The method's result; WDYS's comes with its ablation, built from the same answers (asked once)."""
    if method == "wdys" and {Need.IMAGE_EMBEDDINGS, Need.VISION_LLM} <= inputs.available():
        from dataclasses import replace

        from conceptforest.models.methods.wdys import run_wdys

        started = time.perf_counter()
        fused = run_wdys(inputs)
        return replace(fused.result, seconds=time.perf_counter() - started), fused.ablation
    (outcome,) = run_methods(inputs, [method])
    if isinstance(outcome, NotComputed):
        message, _, fix = outcome.hint.partition(" Fix: ")  # a reason that carries its own fix keeps it
        raise BadInputError(
            f"{outcome.display} could not run: {message.rstrip('.')}.", hint=fix or "see 'zeroshot --help'."
        )
    return outcome, None


BACKBONE_NEEDS = frozenset({Need.IMAGE_EMBEDDINGS, Need.CONCEPT_MATRIX})


def needs_backbone(method: str) -> bool:
    """Whether a registered method needs CLIP (image embeddings or concept scores); ``mllm`` does not."""
    from conceptforest.models.methods import select_methods

    return bool(select_methods([method])[0].needs & BACKBONE_NEEDS)


@dataclass
class ZeroShotResult:
    out_dir: Path
    result: MethodResult
    stats: ExtractionStats
    accuracy: float

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report" / "index.html"


def run_zero_shot(
    images: str | Path,
    method: str,
    out_dir: str | Path,
    *,
    backbone: Backbone | None,
    descriptors: Sequence[DescriptorSet] = (),
    tree: ConceptTree | None = None,
    domain: str = "object",
    vision_llm: VisionLLM | None = None,
    wdys_class_weight: WdysClassWeight | None = None,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ZeroShotResult:
    """Classify every image with one registered zero-shot method; no training, every image evaluated.

    The images are encoded through the same cached extraction as a full run (a tree's concept scores are written
    too: ``tree`` or the LLM-free template tree), so a later ``run`` on the same images re-encodes nothing. A
    method that needs no CLIP (``mllm``: the vision LLM reads the images itself) runs with ``backbone=None``:
    nothing is encoded and no weights are loaded. Writes ``predictions.csv`` and ``report/`` in ``out_dir``.
    ``limit`` evaluates a seeded random sample of that many images (cost control for vision-LLM methods). Every
    label needs one image (there is no split: every image is evaluated).
    """
    from conceptforest.concepts.template import template_tree
    from conceptforest.explain.zeroshot_report import retire_zero_shot_outputs, write_zero_shot_report
    from conceptforest.models.methods import select_methods

    cls = select_methods([method])[0]
    if Need.TRAINING_ROWS in cls.needs or Need.MODEL in cls.needs:
        raise BadInputError(
            f"{cls.display!r} needs training; it is not a zero-shot method.",
            hint="use 'conceptforest run' or 'compare' for trained methods.",
        )
    if backbone is None and cls.needs & BACKBONE_NEEDS:
        raise BadInputError(
            f"{cls.display!r} needs a CLIP backbone.", hint="pass --clip NAME (or leave it to the default)."
        )
    out = Path(out_dir)
    with folder_lock(out), folder_lock(out / REPORT_DIR):  # one writer per output folder and its report
        dataset = load_dataset(images, seed=seed, val_fraction=0, test_fraction=0)
        if backbone is None:
            retire_zero_shot_outputs(out)
            matrix, stats = list_images(dataset, out)
        else:
            tree = tree or template_tree(domain, dataset.labels)
            dataset = load_dataset(images, labels=tree.labels, seed=seed, val_fraction=0, test_fraction=0)
            retire_zero_shot_outputs(out)  # they describe the features replaced next
            matrix, stats = extract_features(dataset, tree, backbone, out, cache_dir=cache_dir, progress=progress)
        frame = matrix.frame.assign(split="test")
        if limit is not None and limit < len(frame):
            frame = frame.sample(n=limit, random_state=seed).sort_index()
        every_image = FeatureMatrix(frame=frame.reset_index(drop=True), meta=matrix.meta)
        inputs = method_inputs(
            every_image,
            split="test",
            seed=seed,
            tree=tree,
            descriptors=descriptors,
            backbone=backbone,
            cache_dir=cache_dir,
            vision_llm=vision_llm,
            wdys_class_weight=wdys_class_weight,
            progress=progress,
        )
        outcome, ablation = _zero_shot_outcome(inputs, method)
        write_zero_shot_report(outcome, every_image, out, seed=seed, ablation=ablation)
        truth = every_image.frame["label"].to_numpy()
        accuracy = float((outcome.predicted == truth).mean()) if len(truth) else float("nan")
        return ZeroShotResult(out_dir=out, result=outcome, stats=stats, accuracy=accuracy)
