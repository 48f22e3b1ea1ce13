"""Drawing one creature with PIL from its ground truth: part values plus nuisances.

A :class:`Creature` is the whole truth of one image: the value each part shows, which parts are removed, and the
nuisances (background colour, position, scale, rotation, lighting, noise). :func:`render` is deterministic for a
creature, so the same creature can be drawn again with one part changed (:meth:`Creature.with_value`) or removed
(:meth:`Creature.without`), as the intervention tests need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from conceptforest.world.spec import BACKGROUND, AttributeKey

__all__ = ["REMOVABLE_PARTS", "Creature", "render"]

RGB = tuple[int, int, int]
BODY_COLOURS: dict[str, RGB] = {
    "red": (200, 40, 40),
    "blue": (40, 80, 205),
    "green": (45, 160, 60),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 175),
}
WING_COLOURS: dict[str, RGB] = {"white": (245, 245, 245), "black": (25, 25, 25), "blue": (40, 80, 205)}
BEAK_COLOURS: dict[str, RGB] = {"orange": (245, 140, 20), "black": (20, 20, 20)}
BACKGROUNDS: dict[str, RGB] = {
    "pale blue": (200, 220, 248),
    "pale yellow": (248, 240, 195),
    "pale green": (205, 240, 205),
    "pale pink": (248, 212, 225),
    "pale grey": (218, 218, 218),
}
EYE_COLOURS: dict[str, RGB] = {"black": (10, 10, 10)}
OUTLINE: RGB = (35, 35, 35)
REMOVABLE_PARTS = ("beak", "crest", "wings", "tail", "legs")


@dataclass(frozen=True)
class Creature:
    """The ground truth of one image."""

    values: dict[AttributeKey, str]  # every slot, the background included
    removed: frozenset[str] = frozenset()
    dx: float = 0.0  # position offset, fraction of the side
    dy: float = 0.0
    scale: float = 1.0
    rotation: float = 0.0  # degrees
    brightness: float = 1.0
    noise: float = 0.0  # standard deviation in grey levels
    noise_seed: int = 0
    label: str | None = field(default=None, compare=False)

    def value(self, part: str, attribute: str) -> str:
        return self.values[AttributeKey(part, attribute)]

    def with_value(self, key: AttributeKey, value: str) -> Creature:
        """The same creature and nuisances with one slot changed (the label no longer applies)."""
        return replace(self, values={**self.values, key: value}, label=None)

    def without(self, part: str) -> Creature:
        """The same creature with one part not drawn."""
        if part not in REMOVABLE_PARTS:
            raise ValueError(f"part {part!r} cannot be removed; removable: {', '.join(REMOVABLE_PARTS)}")
        return replace(self, removed=self.removed | {part}, label=None)

    @property
    def background(self) -> str:
        return self.values[BACKGROUND]


def _darker(colour: RGB, factor: float = 0.6) -> RGB:
    return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))


def _contrast(colour: RGB) -> RGB:
    return (235, 235, 235) if sum(colour) < 200 else (30, 30, 30)


def _draw_tail(draw: ImageDraw.ImageDraw, shape: str, s: float, colour: RGB) -> None:
    x0, y0 = 0.26 * s, 0.50 * s  # where the tail meets the body
    if shape == "fan":
        points = [(x0, y0 - 0.03 * s), (0.04 * s, 0.30 * s), (0.02 * s, 0.50 * s), (0.04 * s, 0.70 * s)]
        draw.polygon([*points, (x0, y0 + 0.03 * s)], fill=colour, outline=OUTLINE)
    elif shape == "forked":
        draw.polygon([(x0, y0 - 0.02 * s), (0.03 * s, 0.33 * s), (0.12 * s, y0)], fill=colour, outline=OUTLINE)
        draw.polygon([(x0, y0 + 0.02 * s), (0.03 * s, 0.67 * s), (0.12 * s, y0)], fill=colour, outline=OUTLINE)
    else:  # pointed
        draw.polygon([(x0, y0 - 0.04 * s), (0.02 * s, y0 + 0.01 * s), (x0, y0 + 0.04 * s)], fill=colour)


def _draw_legs(draw: ImageDraw.ImageDraw, length: str, s: float) -> None:
    top = 0.64 * s
    bottom = top + (0.26 if length == "long" else 0.09) * s
    width = max(2, round(0.025 * s))
    for x in (0.40 * s, 0.52 * s):
        draw.line([(x, top), (x, bottom)], fill=OUTLINE, width=width)
        draw.line([(x, bottom), (x + 0.06 * s, bottom)], fill=OUTLINE, width=width)


def _draw_wing(draw: ImageDraw.ImageDraw, colour: RGB, pattern: str, s: float) -> None:
    box = (0.30 * s, 0.42 * s, 0.60 * s, 0.62 * s)
    draw.ellipse(box, fill=colour, outline=OUTLINE, width=max(1, round(0.012 * s)))
    mark = _contrast(colour)
    if pattern == "striped":
        for i in range(4):
            x = (0.355 + 0.065 * i) * s
            draw.line([(x, 0.45 * s), (x, 0.59 * s)], fill=mark, width=max(2, round(0.022 * s)))
    elif pattern == "spotted":
        r = 0.022 * s
        for cx, cy in ((0.37, 0.48), (0.45, 0.55), (0.53, 0.48), (0.41, 0.57), (0.51, 0.56), (0.45, 0.47)):
            draw.ellipse((cx * s - r, cy * s - r, cx * s + r, cy * s + r), fill=mark)


def _draw_crest(draw: ImageDraw.ImageDraw, shape: str, s: float, colour: RGB) -> None:
    cx, top = 0.68 * s, 0.27 * s  # top of the head
    if shape == "spiky":
        for offset in (-0.06, 0.0, 0.06):
            x = cx + offset * s
            draw.polygon(
                [(x - 0.03 * s, top + 0.02 * s), (x, top - 0.12 * s), (x + 0.03 * s, top + 0.02 * s)], fill=colour
            )
    elif shape == "round":
        draw.ellipse((cx - 0.07 * s, top - 0.10 * s, cx + 0.07 * s, top + 0.04 * s), fill=colour)
    else:  # flat: a low band swept back
        draw.polygon(
            [(cx + 0.04 * s, top + 0.01 * s), (cx - 0.20 * s, top - 0.03 * s), (cx - 0.20 * s, top + 0.01 * s)],
            fill=colour,
        )
        draw.rectangle((cx - 0.20 * s, top - 0.03 * s, cx + 0.04 * s, top + 0.015 * s), fill=colour)


def _draw_beak(draw: ImageDraw.ImageDraw, shape: str, s: float, colour: RGB) -> None:
    x0, y0 = 0.76 * s, 0.36 * s  # where the beak leaves the head
    if shape == "short":
        points = [(x0, y0 - 0.04 * s), (x0 + 0.08 * s, y0), (x0, y0 + 0.04 * s)]
    elif shape == "long":
        points = [(x0, y0 - 0.035 * s), (x0 + 0.23 * s, y0 + 0.01 * s), (x0, y0 + 0.035 * s)]
    else:  # hooked: over the top and down
        points = [(x0, y0 - 0.05 * s), (x0 + 0.09 * s, y0 - 0.03 * s), (x0 + 0.13 * s, y0 + 0.05 * s)]
        points += [(x0 + 0.10 * s, y0 + 0.09 * s), (x0 + 0.07 * s, y0 + 0.03 * s), (x0, y0 + 0.04 * s)]
    draw.polygon(points, fill=colour)


def _draw_creature(creature: Creature, size: int) -> Image.Image:
    """The creature on a transparent layer, before the nuisances."""
    s = float(size)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    body = BODY_COLOURS[creature.value("body", "colour")]
    removed = creature.removed
    if "legs" not in removed:
        _draw_legs(draw, creature.value("legs", "length"), s)
    if "tail" not in removed:
        _draw_tail(draw, creature.value("tail", "shape"), s, _darker(body))
    draw.ellipse((0.22 * s, 0.36 * s, 0.68 * s, 0.66 * s), fill=body, outline=OUTLINE)
    if "crest" not in removed:
        _draw_crest(draw, creature.value("crest", "shape"), s, _darker(body))
    draw.ellipse((0.58 * s, 0.26 * s, 0.78 * s, 0.46 * s), fill=body, outline=OUTLINE)  # the head
    if "wings" not in removed:
        _draw_wing(draw, WING_COLOURS[creature.value("wings", "colour")], creature.value("wings", "pattern"), s)
    if "beak" not in removed:
        _draw_beak(draw, creature.value("beak", "shape"), s, BEAK_COLOURS[creature.value("beak", "colour")])
    r = 0.025 * s
    eye = EYE_COLOURS[creature.value("eye", "colour")]
    draw.ellipse((0.71 * s - r, 0.33 * s - r, 0.71 * s + r, 0.33 * s + r), fill=eye)
    return layer


def _place(layer: Image.Image, creature: Creature, size: int) -> Image.Image:
    """Scale, rotate and move the creature's layer (the position, scale and rotation nuisances)."""
    angle = math.radians(creature.rotation)
    cos, sin = math.cos(angle) / creature.scale, math.sin(angle) / creature.scale
    cx, cy = size / 2, size / 2
    tx, ty = cx + creature.dx * size, cy + creature.dy * size
    # The inverse map: output pixel -> input pixel (PIL's affine convention).
    coefficients = (cos, sin, cx - cos * tx - sin * ty, -sin, cos, cy + sin * tx - cos * ty)
    return layer.transform((size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)


def render(creature: Creature, size: int = 112) -> Image.Image:
    """The RGB image of a creature (deterministic)."""
    layer = _place(_draw_creature(creature, size), creature, size)
    image = Image.new("RGB", (size, size), BACKGROUNDS[creature.background])
    image.paste(layer, (0, 0), layer)
    if creature.brightness != 1.0:
        image = ImageEnhance.Brightness(image).enhance(creature.brightness)
    if creature.noise > 0:
        rng = np.random.default_rng(creature.noise_seed)
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, creature.noise, (size, size, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image
