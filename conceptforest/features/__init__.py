"""Stage 2: images and a ConceptTree become a FeatureMatrix of CLIP concept scores."""

from conceptforest.features.backbone import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    TINY_RANDOM,
    Backbone,
    load_backbone,
    save_tiny_backbone,
    select_device,
)
from conceptforest.features.dataset import ImageDataset, ImageRecord, check_labels_match, load_dataset
from conceptforest.features.extract import ExtractionStats, extract_features
from conceptforest.features.images import ImageDecodeError, SkippedImage, decode_image
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.store import EmbeddingStore

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "TINY_RANDOM",
    "Backbone",
    "EmbeddingStore",
    "ExtractionStats",
    "FeatureMatrix",
    "ImageDataset",
    "ImageDecodeError",
    "ImageRecord",
    "SkippedImage",
    "check_labels_match",
    "decode_image",
    "extract_features",
    "load_backbone",
    "load_dataset",
    "save_tiny_backbone",
    "select_device",
]
