"""Names and defaults that the CLI shows in its help, kept free of heavy imports.

``conceptforest --help`` must not import torch, open_clip or openai; the stage modules import these constants
from here so that each value is defined once.
"""

from __future__ import annotations

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
TINY_RANDOM = "conceptforest-tiny-random"
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: this backbone is untrained; its scores carry no meaning about images."
PRECISIONS = ("fp32", "int8", "fp16", "bf16")
DEFAULT_MAX_PIXELS = 50_000_000
RENDER_FORMATS = ("svg", "png", "dot")
SKIPPED_FILE = "skipped.csv"
LABELS_HINT = "give a text file with one label per line (blank lines and # comments are ignored)."
