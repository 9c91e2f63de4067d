"""A rendered training set: images with their scene descriptions, made reproducibly from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .data import Obj, random_scene, render

if TYPE_CHECKING:
    import torch

JITTER = 0.06


@dataclass
class SceneSet:
    """`images[i]` (uint8 HWC) shows `scenes[i]`."""

    images: np.ndarray
    scenes: list[list[Obj]]


def make_scenes(count: int, seed: int, two_object_prob: float) -> SceneSet:
    rng = random.Random(seed)
    scenes = [random_scene(rng, two_object_prob) for _ in range(count)]
    images = np.stack([render(scene, rng, JITTER) for scene in scenes])
    return SceneSet(images, scenes)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [-1, 1]."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
