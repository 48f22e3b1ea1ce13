"""Stage 3: the ConceptForestClassifier, its bundle format and metrics.

Zero-shot, descriptor-averaging, probe baselines and controls are not built yet (issue 4).
"""

from conceptforest.models.bundle import ModelBundle, load_bundle, save_bundle
from conceptforest.models.forest import ConceptForestClassifier
from conceptforest.models.metrics import bootstrap_interval, classification_metrics, per_label_table
from conceptforest.models.train import train_model

__all__ = [
    "ConceptForestClassifier",
    "ModelBundle",
    "bootstrap_interval",
    "classification_metrics",
    "load_bundle",
    "per_label_table",
    "save_bundle",
    "train_model",
]
