"""Sampling creatures and writing labelled world images with their ground truth.

:func:`make_world_images` writes an image folder that every conceptforest verb reads (``ROOT/<label>/NNNN.png``)
and, beside the label folders, ``ground_truth.jsonl``: one line per image with its label, every part's value
and every nuisance. The class decides the part values; the nuisances are drawn at random and carry no class
information, unless ``shortcut`` ties the background to the label (the Clever-Hans case).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conceptforest.atomic import atomic_write_text
from conceptforest.world.render import Creature, render
from conceptforest.world.spec import BACKGROUND, NUISANCE_PART, AttributeKey, WorldSpec

__all__ = ["GROUND_TRUTH_FILE", "WorldImage", "creature_for", "make_world_images", "random_creature", "read_truth"]

GROUND_TRUTH_FILE = "ground_truth.jsonl"


@dataclass(frozen=True)
class WorldImage:
    """One written image: its path relative to the root and its creature."""

    path: str
    creature: Creature


def _with_nuisances(values: dict[AttributeKey, str], rng: np.random.Generator, label: str | None) -> Creature:
    return Creature(
        values=values,
        dx=float(rng.uniform(-0.06, 0.06)),
        dy=float(rng.uniform(-0.06, 0.06)),
        scale=float(rng.uniform(0.85, 1.08)),
        rotation=float(rng.uniform(-15, 15)),
        brightness=float(rng.uniform(0.82, 1.12)),
        noise=float(rng.uniform(0, 8)),
        noise_seed=int(rng.integers(2**31)),
        label=label,
    )


def _constant_values(spec: WorldSpec) -> dict[AttributeKey, str]:
    return {AttributeKey(p.name, a): v[0] for p in spec.constant_parts for a, v in p.attributes.items()}


def _completed(
    spec: WorldSpec,
    values: dict[AttributeKey, str],
    rng: np.random.Generator,
    label: str | None,
    background: str | None = None,
) -> Creature:
    """The part values completed with the constant parts, a background (random unless given) and nuisances."""
    values.update(_constant_values(spec))
    backgrounds = spec.nuisances[NUISANCE_PART]
    values[BACKGROUND] = background or backgrounds[int(rng.integers(len(backgrounds)))]
    return _with_nuisances(values, rng, label)


def creature_for(spec: WorldSpec, label: str, rng: np.random.Generator, *, background: str | None = None) -> Creature:
    """A creature of class ``label`` with random nuisances (a random background unless one is given)."""
    world_class = spec.world_class(label)
    return _completed(spec, {key: world_class.value(key) for key in spec.slots()}, rng, label, background)


def random_creature(spec: WorldSpec, rng: np.random.Generator) -> Creature:
    """A creature with every slot drawn uniformly (no class), as the world CLIP is trained on."""
    values = {key: spec.values(key)[int(rng.integers(len(spec.values(key))))] for key in spec.slots()}
    return _completed(spec, values, rng, None)


def _truth_line(image: WorldImage) -> str:
    creature = image.creature
    record = {
        "path": image.path,
        "label": creature.label,
        "values": {str(key): value for key, value in sorted(creature.values.items())},
        "removed": sorted(creature.removed),
        "nuisances": {
            "dx": creature.dx,
            "dy": creature.dy,
            "scale": creature.scale,
            "rotation": creature.rotation,
            "brightness": creature.brightness,
            "noise": creature.noise,
            "noise_seed": creature.noise_seed,
        },
    }
    return json.dumps(record, sort_keys=True)


def iter_world_creatures(
    spec: WorldSpec,
    *,
    per_label: int,
    seed: int,
    shortcut: Mapping[str, str] | None = None,
    shortcut_rate: float = 1.0,
) -> Iterator[WorldImage]:
    """Creatures of every class in spec order; ``shortcut`` (label -> background) is used at ``shortcut_rate``."""
    rng = np.random.default_rng(seed)
    for label in spec.labels:
        for index in range(per_label):
            background = None
            if shortcut is not None and rng.random() < shortcut_rate:
                background = shortcut[label]
            creature = creature_for(spec, label, rng, background=background)
            yield WorldImage(f"{label}/{index:04d}.png", creature)


def make_world_images(
    root: str | Path,
    spec: WorldSpec,
    *,
    per_label: int = 20,
    seed: int = 0,
    size: int = 112,
    shortcut: Mapping[str, str] | None = None,
    shortcut_rate: float = 1.0,
) -> list[WorldImage]:
    """Write ``per_label`` PNGs per class into ``root/<label>/`` and ``root/ground_truth.jsonl`` (deterministic)."""
    root = Path(root)
    images = list(
        iter_world_creatures(spec, per_label=per_label, seed=seed, shortcut=shortcut, shortcut_rate=shortcut_rate)
    )
    for image in images:
        target = root / image.path
        target.parent.mkdir(parents=True, exist_ok=True)
        render(image.creature, size).save(target)
    atomic_write_text(root / GROUND_TRUTH_FILE, "".join(_truth_line(image) + "\n" for image in images))
    return images


def read_truth(root: str | Path) -> dict[str, Creature]:
    """The creatures of a written world folder, by relative path."""
    truth: dict[str, Creature] = {}
    for line in (Path(root) / GROUND_TRUTH_FILE).read_text("utf-8").splitlines():
        record = json.loads(line)
        values = {AttributeKey.parse(key): value for key, value in record["values"].items()}
        nuisances = record["nuisances"]
        truth[record["path"]] = Creature(
            values=values, removed=frozenset(record["removed"]), label=record["label"], **nuisances
        )
    return truth
