"""Model bundles: ``model.skops`` + ``manifest.json``. Loading never unpickles: skops refuses unknown types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import skops.io as sio

from conceptforest._version import library_versions
from conceptforest.atomic import atomic_write_bytes, atomic_write_json
from conceptforest.errors import BadInputError
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models.forest import ConceptForestClassifier

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
TRUSTED_TYPES = frozenset({"conceptforest.models.forest.ConceptForestClassifier", "sklearn.tree._tree.Tree"})


@dataclass
class ModelBundle:
    """A fitted model and the manifest that says what it expects."""

    model: ConceptForestClassifier
    manifest: dict[str, Any]

    @property
    def concept_ids(self) -> list[str]:
        return list(self.manifest["concept_ids"])

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def check_matrix(self, matrix: FeatureMatrix) -> None:
        """Refuse a FeatureMatrix whose concepts, backbone or labels differ from the bundle's, saying which."""
        problems = []
        if matrix.concept_ids != self.concept_ids:
            missing = [c for c in self.concept_ids if c not in matrix.concept_ids][:5]
            extra = [c for c in matrix.concept_ids if c not in self.concept_ids][:5]
            problems.append(f"the concepts differ (missing {missing}, unexpected {extra}, or another order)")
        if matrix.backbone_id != self.manifest["backbone_id"]:
            problems.append(
                f"the backbone is {matrix.backbone_id!r}, the model was trained on {self.manifest['backbone_id']!r}"
            )
        unknown = [label for label in matrix.labels if label not in self.labels]
        if unknown:
            problems.append(f"labels {unknown} are unknown to the model (it knows {self.labels})")
        if problems:
            raise BadInputError(
                "The feature matrix does not match the model: " + "; ".join(problems) + ".",
                hint="extract features with the same tree.json and backbone the model was trained on.",
            )


def save_bundle(
    model: ConceptForestClassifier, folder: str | Path, *, matrix: FeatureMatrix, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``model.skops`` and ``manifest.json`` (concept and label order, backbone, tree hash, metrics,
    seeds, versions) atomically into ``folder``."""
    folder = Path(folder)
    manifest = {
        "format_version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "concept_ids": list(map(str, model.feature_names_in_))
        if hasattr(model, "feature_names_in_")
        else matrix.concept_ids,
        "labels": [str(label) for label in model.classes_],
        "backbone_id": matrix.backbone_id,
        "backbone": matrix.meta.get("backbone", {}),
        "concepts": [{"id": c["id"], "sentence": c["sentence"]} for c in matrix.meta["concepts"]],
        "random_weights": bool(matrix.meta.get("random_weights")),
        "tree_hash": matrix.tree_hash,
        "params": {k: v for k, v in model.get_params().items() if k != "param_grid"},
        "param_grid": model.param_grid,
        "best_params": model.best_params_,
        "seeds": {"random_state": model.random_state, "split_seed": matrix.meta.get("split_seed")},
        "metrics": metrics or {},
        "versions": library_versions(),
    }
    atomic_write_bytes(folder / MODEL_FILE, sio.dumps(model))
    atomic_write_json(folder / MANIFEST_FILE, manifest)
    return folder


def load_bundle(folder: str | Path) -> ModelBundle:
    """Load a bundle; a file holding any type outside the trusted list is refused before anything runs."""
    folder = Path(folder)
    model_path, manifest_path = folder / MODEL_FILE, folder / MANIFEST_FILE
    for path in (model_path, manifest_path):
        if not path.is_file():
            raise BadInputError(
                f"{str(path)!r} does not exist.", hint="point at a model folder written by 'conceptforest train'."
            )
    untrusted = set(sio.get_untrusted_types(file=model_path))
    refused = sorted(untrusted - TRUSTED_TYPES)
    if refused:
        raise BadInputError(
            f"{str(model_path)!r} contains types conceptforest does not trust: {refused}.",
            hint="only load model files written by conceptforest; retrain the model if in doubt.",
        )
    model = sio.load(model_path, trusted=sorted(untrusted))
    if not isinstance(model, ConceptForestClassifier):
        raise BadInputError(
            f"{str(model_path)!r} does not hold a ConceptForestClassifier.",
            hint="point at a model folder written by 'conceptforest train'.",
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return ModelBundle(model=model, manifest=manifest)
