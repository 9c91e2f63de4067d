"""Type names (`IO`), the shape of INPUT_TYPES (`InputTypeDict`) and a base class (`ComfyNodeABC`)."""

from __future__ import annotations

from abc import ABC
from enum import StrEnum
from typing import Any, ClassVar, TypedDict


class IO(StrEnum):
    """Socket type names. ANY ("*") matches everything; comma-separated names match any member."""

    STRING = "STRING"
    IMAGE = "IMAGE"
    MASK = "MASK"
    LATENT = "LATENT"
    BOOLEAN = "BOOLEAN"
    INT = "INT"
    FLOAT = "FLOAT"
    COMBO = "COMBO"
    CONDITIONING = "CONDITIONING"
    SAMPLER = "SAMPLER"
    SIGMAS = "SIGMAS"
    GUIDER = "GUIDER"
    NOISE = "NOISE"
    CLIP = "CLIP"
    CONTROL_NET = "CONTROL_NET"
    VAE = "VAE"
    MODEL = "MODEL"
    CLIP_VISION = "CLIP_VISION"
    CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
    STYLE_MODEL = "STYLE_MODEL"
    GLIGEN = "GLIGEN"
    UPSCALE_MODEL = "UPSCALE_MODEL"
    AUDIO = "AUDIO"
    VIDEO = "VIDEO"
    WEBCAM = "WEBCAM"
    POINT = "POINT"
    FACE_ANALYSIS = "FACE_ANALYSIS"
    BBOX = "BBOX"
    SEGS = "SEGS"
    ANY = "*"
    NUMBER = "FLOAT,INT"
    PRIMITIVE = "STRING,FLOAT,INT,BOOLEAN"

    def __ne__(self, value: object) -> bool:
        if self == "*" or value == "*":
            return False
        if not isinstance(value, str):
            return True
        return not set(value.split(",")).issubset(set(self.split(",")))

    __hash__ = str.__hash__


class InputTypeDict(TypedDict, total=False):
    """What INPUT_TYPES() returns."""

    required: dict[str, tuple[Any, ...]]
    optional: dict[str, tuple[Any, ...]]
    hidden: dict[str, Any]


class ComfyNodeABC(ABC):
    """Base class for ComfyUI-convention nodes; it declares the attributes Loom reads."""

    DESCRIPTION: ClassVar[str] = ""
    CATEGORY: ClassVar[str] = "sd"
    RETURN_TYPES: ClassVar[tuple[str, ...]] = ()
    FUNCTION: ClassVar[str]
    OUTPUT_NODE: ClassVar[bool] = False

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {}}


class CheckLazyMixin:
    """A check_lazy_status that asks for every lazy input still missing (None)."""

    def check_lazy_status(self, **kwargs: Any) -> list[str]:
        return [name for name, value in kwargs.items() if value is None]
