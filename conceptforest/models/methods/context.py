"""Build the one :class:`MethodInputs` a comparison shares, from the run's artefacts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from conceptforest.cache import cache_root, embedding_root
from conceptforest.errors import BadInputError
from conceptforest.models.methods.base import MethodInputs, Need

if TYPE_CHECKING:
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.llm import LLMClient
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.features.backbone import Backbone
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.llm.vision_types import VisionLLM
    from conceptforest.models.bundle import ModelBundle
    from conceptforest.models.methods.wdys_weights import WdysClassWeight


def method_inputs(
    matrix: FeatureMatrix,
    *,
    split: str = "test",
    seed: int = 0,
    bundle: ModelBundle | None = None,
    tree: ConceptTree | None = None,
    descriptors: Sequence[DescriptorSet] = (),
    backbone: Backbone | None = None,
    cache_dir: str | Path | None = None,
    llm: LLMClient | None = None,
    vision_llm: VisionLLM | None = None,
    progress: bool = False,
    wdys_class_weight: WdysClassWeight | None = None,
) -> MethodInputs:
    """The shared inputs: with a ``backbone``, the run's cached image embeddings (never re-encoded) and the text
    cache of that backbone; descriptor sets by style (one per style); the split checked to have rows;
    ``wdys_class_weight`` is WDYS's class-weight configuration (None: its default)."""
    from conceptforest.features.store import EmbeddingStore

    if not (matrix.frame["split"] == split).any():
        raise BadInputError(
            f"The feature matrix has no {split!r} rows.", hint="pass --split train/val/test with rows in it."
        )
    by_style: dict[str, DescriptorSet] = {}
    for item in descriptors:
        if item.style in by_style:
            raise BadInputError(
                f"Two descriptor sets of style {item.style!r} were given.", hint="pass one set per style."
            )
        by_style[item.style] = item  # each method matches its labels (ignoring case) and names any missing
    embeddings = text_store = None
    unavailable: dict[Need, str] = {}
    root = cache_root(cache_dir)  # the local cache; the embeddings may live at a URI (embedding_root)
    if backbone is not None:
        if backbone.backbone_id != matrix.backbone_id:
            raise BadInputError(
                f"Backbone {backbone.backbone_id!r} did not make these features ({matrix.backbone_id!r}).",
                hint="use the backbone the features were extracted with.",
            )
        try:
            embeddings = image_embeddings(matrix, backbone.backbone_id, cache_dir)
            text_store = EmbeddingStore(embedding_root(cache_dir), backbone.backbone_id, "texts")
        except BadInputError as exc:  # the methods that need them become rows saying why
            unavailable[Need.IMAGE_EMBEDDINGS] = str(exc)
    return MethodInputs(
        matrix=matrix,
        split=split,
        seed=seed,
        backbone=backbone,
        embeddings=embeddings,
        text_store=text_store,
        tree=tree,
        descriptors=by_style,
        bundle=bundle,
        llm=llm,
        vision_llm=vision_llm,
        progress=progress,
        wdys_class_weight=wdys_class_weight,
        cache_dir=root,
        unavailable=unavailable,
    )


def image_embeddings(matrix: FeatureMatrix, backbone_id: str, cache_dir: str | Path | None = None) -> np.ndarray:
    """The cached image embeddings of the matrix's rows, by the content sha256 each row records (nothing is
    re-encoded). Byte-identical images (several rows with one sha256, under one label or several) share one."""
    from conceptforest.features.store import EmbeddingStore

    store = EmbeddingStore(embedding_root(cache_dir), backbone_id, "images")
    keys = matrix.frame["sha256"].tolist()
    found = store.get(keys)
    missing = set(keys) - set(found)
    if missing:
        rows = sum(1 for key in keys if key in missing)
        raise BadInputError(
            f"{len(missing)} image embedding(s) of this run ({rows} row(s)) are not in the cache {store.location!r}.",
            hint="re-run 'features extract' with the same --cache-dir (it only re-encodes what is missing), or "
            "pass the --cache-dir the features were extracted with.",
        )
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32)
