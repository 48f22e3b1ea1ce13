"""Names and defaults that the CLI shows in its help, kept free of heavy imports.

``conceptforest --help`` must not import torch, open_clip or openai; the stage modules import these constants
from here so that each value is defined once.
"""

from __future__ import annotations

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
TINY_RANDOM = "conceptforest-tiny-random"
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: this backbone is untrained; its scores carry no meaning about images."
WORLD_CLIP = "conceptforest-world"
PACKAGED_BACKBONES = (TINY_RANDOM, WORLD_CLIP)  # short names whose weights come with the package, never a tag
SYNTHETIC_WORLD_WARNING = (
    "TOY WORLD: these numbers come from a small CLIP trained on conceptforest's synthetic creature world; they show "
    "how the pipeline and its explanations behave when the model really sees, not accuracy on photos."
)


def weights_warning(random_weights: bool, synthetic_world: bool) -> str | None:
    """The warning every output of a backbone carries: random weights, a toy-world model, or none."""
    if random_weights:
        return RANDOM_WEIGHTS_WARNING
    return SYNTHETIC_WORLD_WARNING if synthetic_world else None


PRECISIONS = ("fp32", "int8", "fp16", "bf16")
DEFAULT_MAX_PIXELS = 50_000_000
RENDER_FORMATS = ("svg", "png", "dot")
SKIPPED_FILE = "skipped.csv"
LABELS_HINT = "give a text file with one label per line (blank lines and # comments are ignored)."
