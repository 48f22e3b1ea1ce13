"""The backbones that come with the package: the untrained tiny model and the toy-world CLIP.

``conceptforest-tiny-random`` is built in memory from :data:`TINY_CONFIG` (seeded, for fast tests);
``conceptforest-world`` is an open_clip ``local-dir:`` folder inside the package (``data/world_clip``), trained
by :mod:`conceptforest.world.train_clip`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from conceptforest.defaults import DEFAULT_MODEL, RANDOM_WEIGHTS_WARNING, WORLD_CLIP

__all__ = ["TINY_CONFIG", "create_tiny", "resolve_world_clip", "save_tiny_backbone", "world_clip_folder"]

TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def create_tiny(seed: int) -> Any:
    import open_clip

    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: we label that ourselves
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return open_clip.create_model(DEFAULT_MODEL, pretrained=None, **TINY_CONFIG)
    finally:
        root_logger.setLevel(level)


def save_tiny_backbone(directory: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight open_clip model as a ``local-dir:`` folder (config + safetensors weights).

    It is loaded back through the same local path as real weights: ``load_backbone(f"local-dir:{directory}")``.
    """
    from safetensors.torch import save_file

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    model = create_tiny(seed)
    config = {
        "model_cfg": {**TINY_CONFIG, "quick_gelu": False},
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
        "conceptforest": {"random_weights": True, "seed": seed, "note": RANDOM_WEIGHTS_WARNING},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def world_clip_folder() -> Path:
    """The packaged world CLIP (``--clip conceptforest-world``): an open_clip ``local-dir:`` folder."""
    from importlib import resources

    return Path(str(resources.files("conceptforest").joinpath("data", "world_clip")))


def resolve_world_clip(name: str) -> str:
    """``local-dir:<packaged folder>`` for the short name :data:`WORLD_CLIP`; any other name unchanged."""
    return f"local-dir:{world_clip_folder()}" if name == WORLD_CLIP else name
