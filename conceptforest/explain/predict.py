"""Predict new images with a model bundle and explain each prediction with SHAP contributions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conceptforest.cache import embedding_root
from conceptforest.explain import plots
from conceptforest.explain.backbone_check import backbone_for
from conceptforest.explain.shap_values import explain_shap
from conceptforest.features.backbone import Backbone
from conceptforest.features.extract import sentence_embeddings
from conceptforest.features.images import ImageDecodeError, decode_image, read_image_file
from conceptforest.features.store import EmbeddingStore
from conceptforest.models.bundle import ModelBundle, load_bundle

__all__ = ["Contribution", "ImagePrediction", "ImageSkipped", "backbone_for", "predict_images"]

# waterfall file names carry the image's stem, cut to this many bytes so that long names stay valid
STEM_BYTES = 80


@dataclass(frozen=True)
class Contribution:
    """One concept's SHAP contribution to the predicted label, with the image's score for that concept."""

    concept: str
    shap: float
    score: float


@dataclass(frozen=True)
class ImagePrediction:
    """The predicted label of one image, every label's probability (highest first) and the strongest concepts."""

    path: str
    label: str
    probabilities: Mapping[str, float]
    contributions: tuple[Contribution, ...]
    random_weights: bool = False
    synthetic_world: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``predict --json`` prints."""
        return {
            "path": self.path,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "contributions": [{"concept": c.concept, "shap": c.shap, "score": c.score} for c in self.contributions],
            "random_weights": self.random_weights,
            "synthetic_world": self.synthetic_world,
        }


@dataclass(frozen=True)
class ImageSkipped:
    """An image that could not be read or decoded, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``predict --json`` prints: the path and an ``error`` field."""
        return {"path": self.path, "error": self.reason}


PredictionResult = ImagePrediction | ImageSkipped


@dataclass
class _Predictor:
    """What every image's prediction shares: the bundle, the backbone and the concept embeddings."""

    bundle: ModelBundle
    backbone: Backbone
    concept_matrix: np.ndarray
    classes: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.bundle.model.classes_]

    def scores(self, path: Path) -> pd.DataFrame | ImageSkipped:
        """The image's concept scores as a one-row frame, or why it was skipped."""
        try:
            tensor = self.backbone.preprocess(decode_image(read_image_bytes(path)))
        except ImageDecodeError as exc:
            return ImageSkipped(str(path), str(exc))
        except OSError as exc:
            return ImageSkipped(str(path), str(exc.strerror or exc))
        except Exception as exc:  # one image that cannot be prepared never ends the others' predictions
            return ImageSkipped(str(path), f"could not be prepared: {type(exc).__name__}: {exc}")
        scores = self.backbone.encode_images(tensor.unsqueeze(0)) @ self.concept_matrix.T
        return pd.DataFrame(scores.astype(np.float32), columns=self.bundle.concept_ids)

    def predict(self, path: Path, frame: pd.DataFrame, top: int, explain_to: Path | None) -> ImagePrediction:
        proba = self.bundle.model.predict_proba(frame)[0]
        order = np.argsort(-proba, kind="stable")  # ties go to the first class, as the forest's predict does
        label = self.classes[order[0]]
        explanation = explain_shap(self.bundle.model, frame)
        contributions = explanation.for_class(label)[0]
        strongest = np.argsort(-np.abs(contributions))[:top]
        if explain_to is not None:
            figure = plots.waterfall(explanation, 0, label, top=max(top, 8))
            explain_to.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(explain_to, dpi=90, bbox_inches="tight")
            plots.close(figure)
        return ImagePrediction(
            path=str(path),
            label=label,
            probabilities={self.classes[i]: float(proba[i]) for i in order},
            contributions=tuple(
                Contribution(self.bundle.concept_ids[i], float(contributions[i]), float(frame.iloc[0, i]))
                for i in strongest
            ),
            # from the backbone actually loaded: an edited manifest cannot hide that its weights are random
            random_weights=self.backbone.random_weights,
            synthetic_world=self.backbone.synthetic_world,
        )


def read_image_bytes(path: Path) -> bytes:
    """The file's bytes (:func:`~conceptforest.features.images.read_image_file`): a FIFO, device or folder is
    refused without waiting, a file over the byte cap of the default pixel limit without reading it."""
    return read_image_file(path)


def waterfall_name(number: int, path: Path) -> str:
    """``003-<stem>.png`` with the stem cut to :data:`STEM_BYTES` bytes of UTF-8."""
    stem = path.stem.encode("utf-8")[:STEM_BYTES].decode("utf-8", errors="ignore")
    return f"{number:03d}-{stem}.png"


def predict_images(
    model_dir: str | Path,
    images: Sequence[str | Path],
    *,
    top: int = 5,
    explain_dir: str | Path | None = None,
    clip: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[PredictionResult]:
    """Predict and explain each image.

    Returns
    -------
    list of ImagePrediction or ImageSkipped
        One per image, in the given order: the label, probabilities and the ``top`` concept contributions
        (SHAP), or the reason the image could not be read. A skipped image never stops the others.
    """
    bundle = load_bundle(model_dir)
    backbone = backbone_for(
        bundle, clip=clip, pretrained=pretrained, checkpoint=checkpoint, device=device, cache_dir=cache_dir
    )
    store = EmbeddingStore(embedding_root(cache_dir), backbone.backbone_id, "texts")
    concept_matrix = sentence_embeddings(bundle.manifest.sentences, backbone, store)
    predictor = _Predictor(bundle, backbone, concept_matrix)
    results: list[PredictionResult] = []
    for number, image in enumerate(images):
        path = Path(image)
        scored = predictor.scores(path)
        if isinstance(scored, ImageSkipped):
            results.append(scored)
            continue
        explain_to = Path(explain_dir) / waterfall_name(number, path) if explain_dir is not None else None
        results.append(predictor.predict(path, scored, top, explain_to))
    return results
