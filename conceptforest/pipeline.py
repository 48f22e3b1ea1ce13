"""The whole pipeline in one call: tree (cached), features (cached), forest, report.

Besides the CLI, this is the one module that knows all four stages.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conceptforest.atomic import atomic_write_json
from conceptforest.concepts.generate import GenerationLimits, extend_tree, generate_tree
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.explain.build import explain_model, load_skipped
from conceptforest.features.backbone import Backbone
from conceptforest.features.dataset import load_dataset
from conceptforest.features.extract import ExtractionStats, extract_features
from conceptforest.models.baselines import baseline_predictions
from conceptforest.models.bundle import load_bundle
from conceptforest.models.train import train_model

logger = logging.getLogger(__name__)

TREE_FILE = "tree.json"
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
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Images + domain → ``out_dir/{tree.json, trees/, features.parquet, model/, report/}``.

    Labels default to the image folder names. A given ``tree`` is extended with any labels it lacks.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config is not None:
        atomic_write_json(out / "config.json", config)
    found = load_dataset(images, seed=seed).labels if labels is None else labels
    if tree is None:
        tree = generate_tree(domain, found, llm, limits=limits, progress=progress)
    elif missing := [label for label in found if label not in tree.labels]:
        tree = extend_tree(tree, missing, llm, progress=progress)
    save_run_tree(tree, out / TREE_FILE)
    dataset = load_dataset(images, labels=tree.labels, seed=seed)
    matrix, stats = extract_features(dataset, tree, backbone, out, cache_dir=cache_dir, progress=progress)
    _, metrics = train_model(matrix, out / "model", n_estimators=n_estimators, random_state=seed)
    baselines = baseline_predictions(
        matrix, tree, backbone, cache_dir=cache_dir, seed=seed, n_estimators=min(n_estimators, 200)
    )
    explain_model(
        load_bundle(out / "model"),
        matrix,
        out / "report",
        tree=tree,
        skipped=load_skipped(out),
        baselines=baselines,
        n_repeats=n_repeats,
        random_state=seed,
        made_by={"run_dir": str(out), "model_dir": str(out / "model")},
    )
    return RunResult(out_dir=out, tree=tree, stats=stats, metrics=metrics)
