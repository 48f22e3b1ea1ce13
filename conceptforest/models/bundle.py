"""Model bundles: ``model.skops`` + ``manifest.json``. Loading never unpickles: skops refuses unknown types.

The two files are bound: the manifest records the sha256 of the model file's bytes and is written last, so a kill
between the two writes (or a file copied from another run) leaves a pair that ``load_bundle`` refuses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import skops.io as sio
from pydantic import ValidationError

from conceptforest._version import library_versions
from conceptforest.atomic import atomic_write_bytes, atomic_write_json
from conceptforest.errors import BadInputError
from conceptforest.features.matrix import FeatureMatrix, invalid_fields, validation_summary
from conceptforest.models.forest import ConceptForestClassifier
from conceptforest.models.manifest import FORMAT_VERSION, BundleManifest, ConceptSentence, Seeds

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "BundleManifest",
    "ModelBundle",
    "build_manifest",
    "load_bundle",
    "save_bundle",
]
MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
TRUSTED_TYPES = frozenset({"conceptforest.models.forest.ConceptForestClassifier", "sklearn.tree._tree.Tree"})
RETRAIN_HINT = "retrain the model with 'conceptforest train' (or 'conceptforest run') into this folder."


@dataclass
class ModelBundle:
    """A fitted model and the manifest that says what it expects."""

    model: ConceptForestClassifier
    manifest: BundleManifest

    def __post_init__(self) -> None:
        if isinstance(self.manifest, Mapping):  # a manifest dict made in memory (tests): validated here
            self.manifest = BundleManifest.model_validate(dict(self.manifest))

    @property
    def concept_ids(self) -> list[str]:
        return list(self.manifest.concept_ids)

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    @property
    def metrics(self) -> dict[str, Any]:
        """The held-out metrics recorded at training (``eval_split``, ``random_weights``, accuracy, ...)."""
        return dict(self.manifest.metrics)

    def check_matrix(self, matrix: FeatureMatrix) -> None:
        """Refuse a FeatureMatrix whose concepts, backbone or labels differ from the bundle's, saying which."""
        problems = []
        if matrix.concept_ids != self.concept_ids:
            missing = [c for c in self.concept_ids if c not in matrix.concept_ids][:5]
            extra = [c for c in matrix.concept_ids if c not in self.concept_ids][:5]
            problems.append(f"the concepts differ (missing {missing}, unexpected {extra}, or another order)")
        if matrix.backbone_id != self.manifest.backbone_id:
            problems.append(
                f"the backbone is {matrix.backbone_id!r}, the model was trained on {self.manifest.backbone_id!r}"
            )
        unknown = [label for label in matrix.labels if label not in self.labels]
        if unknown:
            problems.append(f"labels {unknown} are unknown to the model (it knows {self.labels})")
        recorded, given = self.manifest.tree_hash, matrix.tree_hash
        if recorded and given and recorded != given:
            # another tree (even with the same concept ids, e.g. another label order) made another split of the same
            # folder: its evaluated rows may be the model's training images
            problems.append(f"the features come from tree {given[:12]}, the model was trained on tree {recorded[:12]}")
        seed, split_seed = self.manifest.seeds.split_seed, matrix.meta.split_seed
        if seed is not None and split_seed is not None and seed != split_seed:
            problems.append(f"the split was made with seed {split_seed}, the model's with seed {seed}")
        if problems:
            raise BadInputError(
                "The feature matrix does not match the model: " + "; ".join(problems) + ".",
                hint="extract features with the same tree.json, backbone and --seed the model was trained on (its "
                "run folder has them), so that no training image is evaluated.",
            )


def build_manifest(
    model: ConceptForestClassifier,
    matrix: FeatureMatrix,
    *,
    metrics: Mapping[str, Any] | None = None,
    model_sha256: str | None = None,
) -> BundleManifest:
    """The manifest of a model fitted on ``matrix`` (concept and label order, backbone, tree hash, params, seeds,
    metrics, versions); ``model_sha256`` is set when the model file is written."""
    meta = matrix.meta
    return BundleManifest(
        format_version=FORMAT_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model_sha256=model_sha256,
        concept_ids=list(map(str, model.feature_names_in_))
        if hasattr(model, "feature_names_in_")
        else matrix.concept_ids,
        labels=[str(label) for label in model.classes_],
        backbone_id=matrix.backbone_id,
        backbone=meta.backbone,
        concepts=[ConceptSentence(id=c.id, sentence=c.sentence) for c in meta.concepts],
        random_weights=meta.random_weights,
        tree_hash=matrix.tree_hash,
        params={k: v for k, v in model.get_params().items() if k != "param_grid"},
        param_grid=model.param_grid,
        best_params=model.best_params_,
        seeds=Seeds(random_state=model.random_state, split_seed=meta.split_seed),
        metrics=dict(metrics or {}),
        versions=library_versions(),
    )


def save_bundle(
    model: ConceptForestClassifier, folder: str | Path, *, matrix: FeatureMatrix, metrics: dict[str, Any] | None = None
) -> ModelBundle:
    """Write ``model.skops`` and then ``manifest.json`` (see :func:`build_manifest`, with the sha256 of the model
    file) atomically into ``folder``; returns the bundle as written."""
    folder = Path(folder)
    model_bytes = sio.dumps(model)
    manifest = build_manifest(model, matrix, metrics=metrics, model_sha256=hashlib.sha256(model_bytes).hexdigest())
    atomic_write_bytes(folder / MODEL_FILE, model_bytes)
    atomic_write_json(folder / MANIFEST_FILE, manifest.to_json())  # last: it vouches for the model file
    return ModelBundle(model=model, manifest=manifest)


def load_bundle(folder: str | Path) -> ModelBundle:
    """Load a bundle, refusing (with a :class:`BadInputError` that names the file) a missing, unreadable,
    untrusted or mismatched pair. A file holding any type outside the trusted list is refused before anything runs.
    """
    folder = Path(folder)
    model_path, manifest_path = folder / MODEL_FILE, folder / MANIFEST_FILE
    for path in (model_path, manifest_path):
        if not path.is_file():
            raise BadInputError(
                f"{str(path)!r} does not exist.", hint="point at a model folder written by 'conceptforest train'."
            )
    manifest = _read_manifest(manifest_path)
    model_bytes = _read_bytes(model_path)
    trusted = _trusted_types_of(model_path, model_bytes)
    if hashlib.sha256(model_bytes).hexdigest() != manifest.model_sha256:
        raise BadInputError(
            f"{str(model_path)!r} is not the model that {str(manifest_path)!r} describes (a run was interrupted "
            "between writing the two, or one of them was replaced).",
            hint=RETRAIN_HINT,
        )
    model = _unpack_model(model_path, model_bytes, trusted)
    _check_model_matches_manifest(model, manifest, folder)
    return ModelBundle(model=model, manifest=manifest)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{str(path)!r} could not be read: {exc}.", hint=RETRAIN_HINT) from exc


def _read_manifest(path: Path) -> BundleManifest:
    """The validated manifest, or a clear error naming the file."""
    try:
        raw = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadInputError(
            f"{str(path)!r} is not valid JSON (it was cut short or edited): {exc}.", hint=RETRAIN_HINT
        ) from exc
    if not isinstance(raw, dict):
        raise BadInputError(f"{str(path)!r} is not a model manifest (a JSON object).", hint=RETRAIN_HINT)
    if not isinstance(raw.get("model_sha256"), str) or raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise BadInputError(
            f"{str(path)!r} does not record the sha256 of its model file, or has another bundle format "
            f"({raw.get('format_version')!r}), so the pair cannot be checked (it was written by a conceptforest "
            f"version other than bundle format {FORMAT_VERSION}, or edited).",
            hint=RETRAIN_HINT,
        )
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as exc:
        raise BadInputError(
            f"{str(path)!r} lacks or garbles the field(s) {invalid_fields(exc)}: {validation_summary(exc)}.",
            hint=RETRAIN_HINT,
        ) from None


def _trusted_types_of(path: Path, data: bytes) -> list[str]:
    """The types the skops bytes hold, each checked against :data:`TRUSTED_TYPES` (nothing is run)."""
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises zipfile, JSON and key errors on a damaged file
        raise BadInputError(
            f"{str(path)!r} is not a readable skops model file (it was cut short or is not a model): "
            f"{type(exc).__name__}: {exc}.",
            hint=RETRAIN_HINT,
        ) from exc
    refused = sorted(untrusted - TRUSTED_TYPES)
    if refused:
        raise BadInputError(
            f"{str(path)!r} contains types conceptforest does not trust: {refused}.",
            hint="only load model files written by conceptforest; retrain the model if in doubt.",
        )
    return sorted(untrusted)


def _unpack_model(path: Path, data: bytes, trusted: list[str]) -> ConceptForestClassifier:
    try:
        model = sio.loads(data, trusted=trusted)
    except Exception as exc:  # a file whose schema lists only trusted types can still be malformed inside
        raise BadInputError(
            f"{str(path)!r} could not be unpacked: {type(exc).__name__}: {exc}.", hint=RETRAIN_HINT
        ) from exc
    if not isinstance(model, ConceptForestClassifier):
        raise BadInputError(
            f"{str(path)!r} does not hold a ConceptForestClassifier.",
            hint="point at a model folder written by 'conceptforest train'.",
        )
    return model


def _check_model_matches_manifest(model: ConceptForestClassifier, manifest: BundleManifest, folder: Path) -> None:
    """The manifest's concept ids and labels must be the model's features and classes, in the same order."""
    problems = []
    concept_ids = manifest.concept_ids
    if hasattr(model, "feature_names_in_"):
        if list(map(str, model.feature_names_in_)) != concept_ids:
            problems.append("its concept ids are not the model's features (feature_names_in_)")
    elif getattr(model, "n_features_in_", None) != len(concept_ids):
        problems.append(f"it lists {len(concept_ids)} concepts, the model has {getattr(model, 'n_features_in_', 0)}")
    if [c.id for c in manifest.concepts] != concept_ids:
        problems.append("its concept sentences do not follow its concept ids")
    classes = [str(label) for label in getattr(model, "classes_", [])]
    if classes != manifest.labels:
        problems.append(f"its labels {manifest.labels} are not the model's classes {classes}")
    if problems:
        raise BadInputError(
            f"The manifest in {str(folder)!r} does not describe its model: " + "; ".join(problems) + ".",
            hint=RETRAIN_HINT,
        )
