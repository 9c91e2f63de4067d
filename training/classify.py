"""Judge generated images: colour, shape, position and size of each object, from pixels alone.

Object pixels are the clearly non-white ones (every palette colour has a channel below 128). Objects are
8-connected components of those pixels of one nearest palette colour, largest first. Colour is that
colour, position comes from the bounding-box centre, size from the box's longer side, and shape from how
the pixels fill the box (a square fills it, a triangle keeps only a quarter of its mass in the top half).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .data import COLOURS, IMAGE_SIZE, SIZES, Obj

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_NAMES = list(COLOURS)
MIN_AREA = 12
_SIZE_SPLIT = IMAGE_SIZE * sum(SIZES.values()) / 2
_CENTER_RADIUS = IMAGE_SIZE / 8


@dataclass(frozen=True)
class Detected:
    """A found object (all attributes concrete) and its pixel count."""

    obj: Obj
    area: int


def object_mask(image: np.ndarray) -> np.ndarray:
    return image.min(axis=2) < 128


def components(mask: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of the 8-connected components of `mask`, largest first."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    height, width = mask.shape
    found: list[np.ndarray] = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if labels[y0, x0]:
            continue
        label = len(found) + 1
        labels[y0, x0] = label
        queue = deque([(y0, x0)])
        while queue:
            y, x = queue.popleft()
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = label
                        queue.append((ny, nx))
        found.append(labels == label)
    return sorted(found, key=lambda m: -int(m.sum()))


def position_of(cx: float, cy: float) -> str:
    dx, dy = cx - IMAGE_SIZE / 2, cy - IMAGE_SIZE / 2
    if max(abs(dx), abs(dy)) < _CENTER_RADIUS:
        return "in the center"
    if abs(dx) >= abs(dy):
        return "on the left" if dx < 0 else "on the right"
    return "at the top" if dy < 0 else "at the bottom"


def shape_of(mask: np.ndarray) -> str:
    """Shape of one component cropped to its bounding box."""
    height = mask.shape[0]
    top = float(mask[: height // 2].sum()) + 0.5 * float(mask[height // 2].sum()) * (height % 2)
    if top / max(float(mask.sum()), 1.0) < 0.38:
        return "triangle"
    return "square" if mask.mean() > 0.88 else "circle"


def describe_component(image: np.ndarray, mask: np.ndarray) -> Detected:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    nearest = ((image[mask].astype(np.float32)[:, None, :] - _PALETTE) ** 2).sum(-1).argmin(1)
    colour = _NAMES[int(np.bincount(nearest, minlength=len(_NAMES)).argmax())]
    obj = Obj(
        shape=shape_of(mask[y0:y1, x0:x1]),
        colour=colour,
        size="large" if max(y1 - y0, x1 - x0) > _SIZE_SPLIT else "small",
        position=position_of((x0 + x1) / 2, (y0 + y1) / 2),
    )
    return Detected(obj, int(mask.sum()))


def detect(image: np.ndarray, max_objects: int = 2) -> list[Detected]:
    """Up to `max_objects` objects of at least MIN_AREA pixels, largest first.

    Components are taken per nearest palette colour, so touching objects of different colours stay apart.
    """
    mask = object_mask(image)
    nearest = ((image.astype(np.float32)[..., None, :] - _PALETTE) ** 2).sum(-1).argmin(-1)
    found = [c for label in np.unique(nearest[mask]) for c in components(mask & (nearest == label))]
    found = sorted((c for c in found if c.sum() >= MIN_AREA), key=lambda c: -int(c.sum()))
    return [describe_component(image, c) for c in found[:max_objects]]


def matches(found: Obj, wanted: Obj) -> dict[str, bool]:
    """Per attribute the prompt states: does the found object have it?"""
    result = {"shape": found.shape == wanted.shape}
    for name in ("colour", "size", "position"):
        value = getattr(wanted, name)
        if value is not None:
            result[name] = getattr(found, name) == value
    return result


def binding_ok(found: list[Detected], spec: list[Obj], attributes: tuple[str, ...]) -> bool:
    """Whether the objects of `spec` can be matched one-to-one to found objects on `attributes`."""
    if len(found) < len(spec):
        return False
    objs = [d.obj for d in found]

    def fits(f: Obj, w: Obj) -> bool:
        ok = matches(f, w)
        return all(ok.get(a, True) for a in attributes)

    if len(spec) == 1:
        return any(fits(f, spec[0]) for f in objs)
    a, b = objs[0], objs[1]
    return (fits(a, spec[0]) and fits(b, spec[1])) or (fits(b, spec[0]) and fits(a, spec[1]))
