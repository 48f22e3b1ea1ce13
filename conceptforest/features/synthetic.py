"""Made-up labelled images for fast tests (with the random tiny backbone): coloured shapes with textures and counts.

The offline demo uses the ground-truth world instead (:mod:`conceptforest.world`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from conceptforest.concepts.descriptors import DescriptorSet

SHAPES = {
    "red disc": ("disc", (215, 40, 40)),
    "blue tile": ("tile", (40, 70, 210)),
    "green wedge": ("wedge", (40, 160, 60)),
    "yellow star": ("star", (235, 200, 30)),
    "purple ring": ("ring", (140, 50, 170)),
}


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.45
        angle = math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy - radius * math.sin(angle)))
    return points


def draw_shape(label: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """One image of ``label``: random background shade, position, size, count (1-3) and optional stripes."""
    kind, colour = SHAPES[label]
    shade = int(rng.integers(170, 250))
    image = Image.new("RGB", (size, size), (shade, shade, int(rng.integers(170, 250))))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        r = float(rng.uniform(size * 0.12, size * 0.25))
        cx, cy = rng.uniform(r, size - r, size=2)
        jitter = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
        box = [cx - r, cy - r, cx + r, cy + r]
        if kind == "disc":
            draw.ellipse(box, fill=jitter)
        elif kind == "tile":
            draw.rectangle(box, fill=jitter)
        elif kind == "wedge":
            draw.polygon([(cx - r, cy + r), (cx + r, cy + r), (cx, cy - r)], fill=jitter)
        elif kind == "star":
            draw.polygon(_star(cx, cy, r), fill=jitter)
        else:
            draw.ellipse(box, outline=jitter, width=max(2, int(r / 3)))
    if rng.random() < 0.3:
        for x in range(0, size, 8):
            draw.line([(x, 0), (x, size)], fill=(shade - 30, shade - 30, shade - 30), width=1)
    return image


def make_shape_images(
    root: str | Path, *, per_label: int = 60, labels: list[str] | None = None, seed: int = 0, size: int = 96
) -> Path:
    """Write ``per_label`` PNGs per label into ``root/<label>/`` (deterministic for a seed)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label in labels or list(SHAPES):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            draw_shape(label, rng, size).save(folder / f"{i:04d}.png")
    return root


# Hand-written descriptors of the shapes, so that tests with no LLM can run the description methods too. Their
# provenance says they are hand-written, not an LLM's.
_SHAPE_WORDS = {
    "disc": ("a round filled shape", "a smooth circular outline", "no corners"),
    "tile": ("a square shape", "four straight edges", "four right-angled corners"),
    "wedge": ("a triangular shape", "three straight edges", "a pointed tip"),
    "star": ("five pointed arms", "a spiky outline", "sharp points around a centre"),
    "ring": ("a round outline with a hole", "a thick circular band", "an empty centre"),
}


def demo_descriptor_sets() -> list[DescriptorSet]:
    """A DCLIP-style and a CuPL-style descriptor set for :data:`SHAPES`, written by hand (no LLM)."""
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.provenance import Provenance

    note = "hand-written for tests (no LLM): the shapes' colour and geometry"
    dclip: dict[str, list[str]] = {}
    cupl: dict[str, list[str]] = {}
    for label, (kind, _) in SHAPES.items():
        colour = label.split()[0]
        dclip[label] = [f"{colour} colour", *_SHAPE_WORDS[kind]]
        cupl[label] = [
            f"A {label} is {_SHAPE_WORDS[kind][0]} coloured {colour}.",
            f"A {label} has {_SHAPE_WORDS[kind][1]} in {colour}.",
            f"A photo of a {label} shows {_SHAPE_WORDS[kind][2]} on a plain background.",
        ]
    labels = list(SHAPES)
    return [
        DescriptorSet(style="dclip", labels=labels, descriptors=dclip, provenance=Provenance(note=note)),
        DescriptorSet(style="cupl", labels=labels, descriptors=cupl, provenance=Provenance(note=note)),
    ]
