"""FeatureMeta: the typed sidecar (``concepts.json``) of a FeatureMatrix.

The JSON keys are those the features stage has written since sidecar format 2, so every sidecar written before
this module existed still loads. Concepts are :class:`~conceptforest.concepts.tree.Concept` objects; the backbone is
a :class:`~conceptforest.features.spec.BackboneSpec`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conceptforest.concepts.tree import Concept
from conceptforest.features.spec import BackboneSpec

SIDECAR_FORMAT = 2
# a Concept's fields that made-up or hand-written sidecars may leave out (read as empty, as before)
_OPTIONAL_CONCEPT_FIELDS: dict[str, Any] = {"part_path": "", "attribute": "", "value": "", "sentence": "", "labels": ()}


class Standardization(BaseModel):
    """Per-concept mean and standard deviation of the scores, fitted on the train rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: list[float]
    std: list[float]
    fitted_on: str = "train"
    rows: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _same_length(self) -> Standardization:
        if len(self.mean) != len(self.std):
            raise ValueError(f"standardization has {len(self.mean)} means but {len(self.std)} deviations")
        return self


class FeatureMeta(BaseModel):
    """What made a FeatureMatrix: concepts in column order, label order, backbone, tree, counts, versions.

    ``features_sha256`` binds the sidecar to the ``features.parquet`` it describes (None until saved).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = SIDECAR_FORMAT
    labels: list[str]
    concepts: list[Concept]
    backbone_id: str
    backbone: BackboneSpec | None = None
    random_weights: bool = False
    warning: str | None = None
    tree_hash: str = ""
    tree_generator: str = "unknown"
    split_seed: int | None = None
    source: str | None = None
    n_images: int | None = None
    n_scored: int | None = None
    n_skipped: int | None = None
    standardization: Standardization | None = None
    # how JPEGs were decoded: pillow, torchvision or nvjpeg (other formats: always Pillow); None: not recorded
    image_decoder: str | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    features_sha256: str | None = None

    @field_validator("concepts", mode="before")
    @classmethod
    def _fill_concepts(cls, value: Any) -> Any:
        """Concept dicts that leave out part, attribute, value, sentence or labels read them as empty."""
        if not isinstance(value, list):
            return value
        return [{**_OPTIONAL_CONCEPT_FIELDS, **item} if isinstance(item, dict) else item for item in value]

    @model_validator(mode="after")
    def _consistent(self) -> FeatureMeta:
        ids = [c.id for c in self.concepts]
        if len(set(ids)) != len(ids):
            raise ValueError("concept ids must be unique")
        if self.standardization is not None and len(self.standardization.mean) != len(ids):
            raise ValueError(f"standardization covers {len(self.standardization.mean)} concepts, not {len(ids)}")
        return self

    @property
    def concept_ids(self) -> list[str]:
        return [c.id for c in self.concepts]

    def to_json(self) -> dict[str, Any]:
        """The sidecar's JSON object (the keys ``concepts.json`` has always had)."""
        return self.model_dump(mode="json")
