"""How well the toy-world CLIP sees its world: zero-shot recognition of every attribute's value.

Loads the backbone through conceptforest's own loading path (``--clip``, default ``conceptforest-world``; the
images go through its preprocessing, as in ``features extract``), draws fresh creatures, and for every (part,
attribute) slot gives each image the value whose concept sentence ("the colour of the beak is orange") is closest.
Reports the accuracy per slot, its mean and the worst slot, on creatures showing no held-out combination and on
creatures each showing one combination that was kept out of training (compositional generalisation). The
baselines, measured in the same run: chance (1 / number of values, per slot) and the untrained tiny backbone.

These are toy-world numbers: they say how well the model sees the drawings it was trained on, not photos.

    python benchmarks/world_clip.py --images 1500
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from _common import emit

from conceptforest.defaults import TINY_RANDOM, WORLD_CLIP
from conceptforest.features.backbone import Backbone, load_backbone
from conceptforest.world import load_world, render
from conceptforest.world.clip_quality import AttributeAccuracy, attribute_accuracy, held_out_creatures, seen_creatures
from conceptforest.world.render import Creature
from conceptforest.world.spec import WorldSpec

NOTE = (
    "TOY WORLD: zero-shot attribute recognition of a small CLIP on conceptforest's synthetic creature world; it "
    "shows how well the model sees these drawings, not accuracy on photos."
)


def _measure(backbone: Backbone, spec: WorldSpec, seen: list[Creature], held: list[Creature]) -> dict[str, Any]:
    def encode_images(creatures: Sequence[Creature]) -> np.ndarray:
        batch = torch.stack([backbone.preprocess(render(c)) for c in creatures])
        return backbone.encode_images(batch)

    def encode_texts(texts: Sequence[str]) -> np.ndarray:
        return backbone.encode_texts(list(texts))

    started = time.perf_counter()
    on_seen = attribute_accuracy(spec, seen, encode_images, encode_texts)
    on_held = attribute_accuracy(spec, held, encode_images, encode_texts)
    return {
        "backbone_id": backbone.backbone_id,
        "seen_combinations": on_seen.as_dict(),
        "held_out_combinations": on_held.as_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _chance(spec: WorldSpec, images: int) -> dict[str, Any]:
    return AttributeAccuracy({str(k): 1 / len(spec.values(k)) for k in spec.varied_slots()}, images).as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clip", default=WORLD_CLIP, help="backbone to measure: conceptforest-world or local-dir:FOLDER"
    )
    parser.add_argument("--images", type=int, default=1500, help="creatures per set")
    parser.add_argument("--seed", type=int, default=7, help="seed of the creatures (not the training seed)")
    args = parser.parse_args()
    spec = load_world()
    seen = seen_creatures(spec, args.images, args.seed)
    held = held_out_creatures(spec, args.images, args.seed + 1)
    emit(
        {
            "note": NOTE,
            "images_per_set": args.images,
            "measured": _measure(load_backbone(args.clip, None), spec, seen, held),
            "baseline_chance": _chance(spec, args.images),
            "baseline_untrained": _measure(load_backbone(TINY_RANDOM), spec, seen, held),
        }
    )


if __name__ == "__main__":
    main()
