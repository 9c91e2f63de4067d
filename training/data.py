"""Procedural scenes: one or two flat shapes on white, their captions, and prompt parsing.

Caption grammar: ``a [small|large] [<colour>] <circle|square|triangle> [<position>]``, optionally two objects
joined by `` and ``. Every bracketed attribute may be omitted from a caption; the image then shows a random
value for it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 20),
    "purple": (140, 40, 180),
    "orange": (250, 120, 10),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.22, "large": 0.40}
# Object centre as a fraction of the image side (x, y).
POSITIONS: dict[str, tuple[float, float]] = {
    "on the left": (0.25, 0.5),
    "on the right": (0.75, 0.5),
    "at the top": (0.5, 0.25),
    "at the bottom": (0.5, 0.75),
    "in the center": (0.5, 0.5),
}


@dataclass(frozen=True)
class Obj:
    """One object; in a prompt spec, None means the caption leaves the attribute out."""

    shape: str
    colour: str | None = None
    size: str | None = None
    position: str | None = None


def random_object(rng: random.Random, exclude_positions: tuple[str, ...] = ()) -> Obj:
    """A fully specified random object at a position not in `exclude_positions`."""
    return Obj(
        shape=rng.choice(SHAPES),
        colour=rng.choice(list(COLOURS)),
        size=rng.choice(list(SIZES)),
        position=rng.choice([p for p in POSITIONS if p not in exclude_positions]),
    )


def _box(obj: Obj) -> tuple[float, float, float, float]:
    fx, fy = POSITIONS[obj.position or "in the center"]
    half = SIZES[obj.size or "large"] / 2 + 0.03
    return fx - half, fy - half, fx + half, fy + half


def apart(a: Obj, b: Obj) -> bool:
    """Whether two objects' boxes (with a margin for jitter) do not overlap."""
    ax0, ay0, ax1, ay1 = _box(a)
    bx0, by0, bx1, by1 = _box(b)
    return ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


def random_scene(rng: random.Random, two_object_prob: float = 0.0) -> list[Obj]:
    """One object, or with `two_object_prob` two non-overlapping objects of different colours."""
    if rng.random() >= two_object_prob:
        return [random_object(rng)]
    while True:
        first = random_object(rng)
        second = random_object(rng, exclude_positions=(first.position or "",))
        if second.colour != first.colour and apart(first, second):
            return [first, second]


def render(scene: list[Obj], rng: random.Random | None = None, jitter: float = 0.0) -> np.ndarray:
    """The scene as a 64×64 RGB uint8 image; `jitter` moves centres and scales sizes by up to that share."""
    rng = rng or random.Random(0)
    big = IMAGE_SIZE * SUPERSAMPLE
    image = Image.new("RGB", (big, big), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for obj in scene:
        assert obj.colour and obj.size and obj.position, "render needs a fully specified scene"
        fx, fy = POSITIONS[obj.position]
        cx = (fx + rng.uniform(-jitter, jitter) * 0.5) * big
        cy = (fy + rng.uniform(-jitter, jitter) * 0.5) * big
        half = SIZES[obj.size] * (1 + rng.uniform(-jitter, jitter)) * big / 2
        box = (cx - half, cy - half, cx + half, cy + half)
        colour = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif obj.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=colour)
    return np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))


def describe(obj: Obj) -> str:
    """The caption phrase of one (possibly partial) object."""
    words = ["a", obj.size, obj.colour, obj.shape, obj.position]
    return " ".join(w for w in words if w)


def prompt_of(spec: list[Obj]) -> str:
    return " and ".join(describe(obj) for obj in spec)


def caption(scene: list[Obj], rng: random.Random, keep: dict[str, float]) -> str:
    """A caption for `scene` that states each attribute with its probability in `keep`."""
    spec = [
        replace(
            obj,
            colour=obj.colour if rng.random() < keep["colour"] else None,
            size=obj.size if rng.random() < keep["size"] else None,
            position=obj.position if rng.random() < keep["position"] else None,
        )
        for obj in scene
    ]
    return prompt_of(spec)


_OBJECT = re.compile(
    r"^a(?: (?P<size>small|large))?(?: (?P<colour>" + "|".join(COLOURS) + r"))?"
    r" (?P<shape>" + "|".join(SHAPES) + r")(?: (?P<position>" + "|".join(POSITIONS) + r"))?$"
)


def parse_prompt(prompt: str) -> list[Obj]:
    """The spec of a grammar prompt; raises ValueError for text outside the grammar."""
    spec = []
    for part in prompt.strip().lower().split(" and "):
        match = _OBJECT.match(part.strip())
        if match is None:
            raise ValueError(f"not in the caption grammar: {part!r}")
        spec.append(Obj(match["shape"], match["colour"], match["size"], match["position"]))
    return spec
