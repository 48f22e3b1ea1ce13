"""FeatureMatrix: one row per image, one float32 column per concept, with its sidecar of provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conceptforest.atomic import atomic_write_json
from conceptforest.errors import BadInputError

FEATURES_FILE = "features.parquet"
SIDECAR_FILE = "concepts.json"
ID_COLUMNS = ("path", "label", "split", "sha256")
# dictionary encoding only for the label and split columns: on float score columns it costs 5x the write time
PARQUET_WRITE_OPTIONS: dict[str, Any] = {"use_dictionary": ["label", "split"]}


@dataclass
class FeatureMatrix:
    """Concept scores of images, with what made them.

    ``frame`` holds ``path``, ``label``, ``split``, ``sha256`` (of the image bytes: the embedding cache key) and
    one column per concept id (cosine similarity of the
    image embedding with the concept sentence embedding). ``meta`` is the sidecar: concepts, label order,
    backbone id, tree hash, whether the weights were random, optional standardisation, versions.
    """

    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def concept_ids(self) -> list[str]:
        return [c["id"] for c in self.meta["concepts"]]

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def backbone_id(self) -> str:
        return str(self.meta["backbone_id"])

    @property
    def tree_hash(self) -> str:
        return str(self.meta["tree_hash"])

    def rows(self, split: str | None = None) -> pd.DataFrame:
        return self.frame if split is None else self.frame[self.frame["split"] == split]

    def X(self, split: str | None = None, *, standardized: bool = False) -> pd.DataFrame:
        """Concept scores as a DataFrame whose columns are concept ids (optionally standardised)."""
        scores = self.rows(split)[self.concept_ids]
        if standardized:
            stats = self.meta.get("standardization")
            if not stats:
                raise BadInputError(
                    "This feature matrix was extracted without standardisation statistics.",
                    hint="re-run 'features extract' with --standardize.",
                )
            scores = (scores - np.asarray(stats["mean"], dtype=np.float32)) / np.asarray(stats["std"], dtype=np.float32)
        return scores

    def y(self, split: str | None = None) -> pd.Series:
        return self.rows(split)["label"]

    @classmethod
    def load(cls, folder: str | Path) -> FeatureMatrix:
        folder = Path(folder)
        features, sidecar = folder / FEATURES_FILE, folder / SIDECAR_FILE
        for path in (features, sidecar):
            if not path.is_file():
                raise BadInputError(
                    f"{str(path)!r} does not exist.",
                    hint="point at the output folder of 'conceptforest features extract'.",
                )
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        frame = pd.read_parquet(features)
        expected = [*ID_COLUMNS, *(c["id"] for c in meta["concepts"])]
        if list(frame.columns) != expected:
            raise BadInputError(
                f"{str(features)!r} does not match its sidecar {str(sidecar)!r}.",
                hint="re-run 'conceptforest features extract' into an empty folder.",
            )
        return cls(frame=frame, meta=meta)

    def save_sidecar(self, folder: str | Path) -> Path:
        return atomic_write_json(Path(folder) / SIDECAR_FILE, self.meta)
