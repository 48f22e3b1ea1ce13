"""Predict new images with a model bundle and explain each prediction with SHAP contributions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conceptforest.cache import conceptforest_home
from conceptforest.errors import BadInputError
from conceptforest.explain import plots
from conceptforest.explain.shap_values import explain_shap
from conceptforest.features.backbone import TINY_RANDOM, Backbone, load_backbone
from conceptforest.features.extract import sentence_embeddings
from conceptforest.features.images import ImageDecodeError, decode_image
from conceptforest.features.store import EmbeddingStore
from conceptforest.models.bundle import ModelBundle, load_bundle


def backbone_for(
    bundle: ModelBundle,
    *,
    clip: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | None = None,
) -> Backbone:
    """Load the backbone the model was trained on (or the one given), and refuse any other."""
    spec = bundle.manifest.get("backbone", {})
    name = clip or spec.get("model")
    if not name:
        raise BadInputError(
            "The model's manifest does not say which CLIP backbone made its features.",
            hint="pass --clip MODEL with --pretrained TAG or --checkpoint FILE.",
        )
    weights = str(spec.get("weights", ""))
    if pretrained is None and checkpoint is None and name != TINY_RANDOM and not name.startswith("local-dir:"):
        if weights.startswith("sha256-"):
            raise BadInputError(
                f"The model was trained on a checkpoint file ({weights}).",
                hint="pass --clip MODEL --checkpoint FILE with that same file.",
            )
        pretrained = weights or None
    backbone = load_backbone(
        name, pretrained, checkpoint=checkpoint, device=device, precision=str(spec.get("precision", "fp32"))
    )
    if backbone.backbone_id != bundle.manifest["backbone_id"]:
        raise BadInputError(
            f"The backbone {backbone.backbone_id!r} is not the one the model was trained on "
            f"({bundle.manifest['backbone_id']!r}).",
            hint="pass the --clip/--pretrained/--checkpoint used for 'features extract'.",
        )
    return backbone


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
) -> list[dict[str, Any]]:
    """One dict per image: label, probabilities, top concept contributions (or the reason it was skipped)."""
    bundle = load_bundle(model_dir)
    backbone = backbone_for(bundle, clip=clip, pretrained=pretrained, checkpoint=checkpoint, device=device)
    concepts = bundle.manifest["concepts"]
    store = EmbeddingStore(cache_dir or conceptforest_home() / "cache", backbone.backbone_id, "texts")
    concept_matrix = sentence_embeddings([c["sentence"] for c in concepts], backbone, store)
    results: list[dict[str, Any]] = []
    for number, image in enumerate(images):
        path = Path(image)
        try:
            tensor = backbone.preprocess(decode_image(path.read_bytes()))
        except (ImageDecodeError, OSError) as exc:
            results.append({"path": str(path), "error": str(exc)})
            continue
        scores = backbone.encode_images(tensor.unsqueeze(0)) @ concept_matrix.T
        frame = pd.DataFrame(scores.astype(np.float32), columns=bundle.concept_ids)
        proba = bundle.model.predict_proba(frame)[0]
        classes = [str(c) for c in bundle.model.classes_]
        order = np.argsort(-proba)
        label = classes[order[0]]
        explanation = explain_shap(bundle.model, frame)
        contributions = explanation.for_class(label)[0]
        strongest = np.argsort(-np.abs(contributions))[:top]
        results.append(
            {
                "path": str(path),
                "label": label,
                "probabilities": {classes[i]: float(proba[i]) for i in order},
                "contributions": [
                    {
                        "concept": bundle.concept_ids[i],
                        "shap": float(contributions[i]),
                        "score": float(frame.iloc[0, i]),
                    }
                    for i in strongest
                ],
                "random_weights": bool(bundle.manifest.get("random_weights")),
            }
        )
        if explain_dir is not None:
            figure = plots.waterfall(explanation, 0, label, top=max(top, 8))
            Path(explain_dir).mkdir(parents=True, exist_ok=True)
            figure.savefig(Path(explain_dir) / f"{number:03d}-{path.stem}.png", dpi=90, bbox_inches="tight")
            plots.close(figure)
    return results
