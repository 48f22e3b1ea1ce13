"""BundleManifest: the typed ``manifest.json`` of a model bundle (the keys of bundle format 2, unchanged)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conceptforest.features.spec import BackboneSpec

FORMAT_VERSION = 2


class ConceptSentence(BaseModel):
    """A concept id and the sentence the backbone scores for it (what predict needs to score new images)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    sentence: str


class Seeds(BaseModel):
    """The seeds that make a training run repeatable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    random_state: int | None = None
    split_seed: int | None = None


class BundleManifest(BaseModel):
    """What a fitted model expects and how it was made.

    ``model_sha256`` binds the manifest to ``model.skops`` (None for a bundle not yet saved). ``metrics`` are the
    held-out metrics of :func:`~conceptforest.models.metrics.classification_metrics` plus ``eval_split`` and
    ``random_weights``; ``params``, ``param_grid`` and ``best_params`` are the classifier's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    created_at: str = ""
    model_sha256: str | None = None
    concept_ids: list[str]
    labels: list[str]
    backbone_id: str
    backbone: BackboneSpec | None = None
    concepts: list[ConceptSentence]
    random_weights: bool = False
    tree_hash: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    param_grid: dict[str, list[Any]] | None = None
    best_params: dict[str, Any] | None = None
    seeds: Seeds = Field(default_factory=Seeds)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str | None] = Field(default_factory=dict)

    @property
    def sentences(self) -> list[str]:
        """The concept sentences, in column order."""
        return [c.sentence for c in self.concepts]

    @property
    def synthetic_world(self) -> bool:
        """Whether the backbone was trained only on the synthetic world (toy-world numbers)."""
        return self.backbone is not None and self.backbone.synthetic_world

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``manifest.json`` holds."""
        return self.model_dump(mode="json")
