"""ResizeImageMaskNode (ComfyUI's newer `comfy_extras.nodes_post_processing`, not in 0.3.64): resize an
image or a mask by one of nine rules.

ComfyUI declares `resize_type` as a DynamicCombo: each rule brings its own inputs, which prompts name
`resize_type.width`, `resize_type.megapixels`... and the front end stores right after the rule's name
(`["scale total pixels", 1.6, "area"]`). Loom publishes every rule's inputs once, each marked with the
rules that show it (`shown_for`), so a saved workflow converts with the chosen rule's values only.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.native import Input, Node, Output, Socket
from nodes.image.basic import CROP_METHODS, MAX_RESOLUTION, UPSCALE_METHODS, upscale

ImageOrMask = Annotated[Any, Socket("IMAGE,MASK")]

SCALE_DIMENSIONS = "scale dimensions"
SCALE_BY = "scale by multiplier"
SCALE_LONGER = "scale longer dimension"
SCALE_SHORTER = "scale shorter dimension"
SCALE_WIDTH = "scale width"
SCALE_HEIGHT = "scale height"
SCALE_TOTAL_PIXELS = "scale total pixels"
MATCH_SIZE = "match size"
SCALE_TO_MULTIPLE = "scale to multiple"
# In ComfyUI's order (the front end lists them so; the first is the default).
RESIZE_TYPES = (
    SCALE_DIMENSIONS,
    SCALE_BY,
    SCALE_LONGER,
    SCALE_SHORTER,
    SCALE_WIDTH,
    SCALE_HEIGHT,
    SCALE_TOTAL_PIXELS,
    MATCH_SIZE,
    SCALE_TO_MULTIPLE,
)
SIDE = {"min": 0, "max": MAX_RESOLUTION, "step": 1}


def _size_of(tensor: Any) -> tuple[int, int]:
    """(width, height) of an IMAGE [B, H, W, C] or a MASK [B, H, W]."""
    return int(tensor.shape[2]), int(tensor.shape[1])


def _resample(tensor: Any, width: int, height: int, method: str, crop: str = "disabled") -> Any:
    """An IMAGE or MASK resized as ComfyUI's common_upscale does, in the same layout it came in."""
    if tensor.ndim == 4:
        return upscale(tensor.movedim(-1, 1), width, height, method, crop).movedim(1, -1)
    if method == "lanczos":  # Pillow's lanczos takes no one-channel float array: as grey RGB
        return upscale(tensor.unsqueeze(1).expand(-1, 3, -1, -1), width, height, method, crop)[:, 0]
    return upscale(tensor.unsqueeze(1), width, height, method, crop).squeeze(1)


def target_size(rule: str, width: int, height: int, values: dict[str, Any]) -> tuple[int, int]:
    """The size a rule gives an input of `width` × `height` (all rules but match size and multiples)."""
    if rule == SCALE_BY:
        return round(width * values["multiplier"]), round(height * values["multiplier"])
    if rule in (SCALE_DIMENSIONS, SCALE_WIDTH, SCALE_HEIGHT):
        new_w = values["width"] if rule != SCALE_HEIGHT else 0
        new_h = values["height"] if rule != SCALE_WIDTH else 0
        if new_w == 0:
            new_w = max(1, round(width * new_h / height))
        elif new_h == 0:
            new_h = max(1, round(height * new_w / width))
        return new_w, new_h
    if rule in (SCALE_LONGER, SCALE_SHORTER):
        size = values["longer_size" if rule == SCALE_LONGER else "shorter_size"]
        scale_height = (height > width) == (rule == SCALE_LONGER)
        if width == height:
            return size, size
        if scale_height:
            return round(width / height * size), size
        return size, round(height / width * size)
    if rule == SCALE_TOTAL_PIXELS:
        factor = math.sqrt(int(values["megapixels"] * 1024 * 1024) / (width * height))
        return round(width * factor), round(height * factor)
    raise ValueError(f"ResizeImageMaskNode: input 'resize_type' has an unknown value {rule!r}")


def to_multiple(tensor: Any, multiple: int, method: str) -> Any:
    """Cover the largest size divisible by `multiple` (scaled up to cover it, then centre-cropped)."""
    width, height = _size_of(tensor)
    target_w, target_h = width // multiple * multiple, height // multiple * multiple
    if multiple <= 1 or target_w == 0 or target_h == 0 or (target_w, target_h) == (width, height):
        return tensor
    if target_w / width >= target_h / height:
        scaled_w, scaled_h = target_w, max(target_h, math.ceil(height * target_w / width))
    else:
        scaled_w, scaled_h = max(target_w, math.ceil(width * target_h / height)), target_h
    scaled = _resample(tensor, scaled_w, scaled_h, method)
    x0, y0 = (scaled_w - target_w) // 2, (scaled_h - target_h) // 2
    return scaled[:, y0 : y0 + target_h, x0 : x0 + target_w]


def _sub(description: str, name: str, rules: tuple[str, ...], default: Any, **limits: Any) -> Input:
    """A rule's input; optional in Loom's spec (only the chosen rule's are sent), its default published
    for the front end as ComfyUI does."""
    return Input(
        description, name=f"resize_type.{name}", shown_for=rules, extra={"default": default}, **limits
    )


class ResizeImageMaskNode(Node):
    """Resize an image or mask using various scaling methods."""

    display_name = "Resize Image/Mask"
    category = "transform"

    def run(
        self,
        source: Annotated[ImageOrMask, Input("The image or mask to resize.", name="input")],
        resize_type: Annotated[
            str,
            Input(
                "How to resize: to dimensions, by a factor, to match another input...", choices=RESIZE_TYPES
            ),
        ],
        scale_method: Annotated[
            str,
            Input(
                "Interpolation: area for downscaling, lanczos for upscaling.",
                choices=UPSCALE_METHODS,
                publish_default=True,
            ),
        ] = "area",
        width: Annotated[
            int | None,
            _sub("Target width (0: from the height).", "width", (SCALE_DIMENSIONS, SCALE_WIDTH), 512, **SIDE),
        ] = None,
        height: Annotated[
            int | None,
            _sub(
                "Target height (0: from the width).", "height", (SCALE_DIMENSIONS, SCALE_HEIGHT), 512, **SIDE
            ),
        ] = None,
        multiplier: Annotated[
            float | None, _sub("Scale factor.", "multiplier", (SCALE_BY,), 1.0, min=0.01, max=8.0, step=0.01)
        ] = None,
        longer_size: Annotated[
            int | None, _sub("The longer side afterwards.", "longer_size", (SCALE_LONGER,), 512, **SIDE)
        ] = None,
        shorter_size: Annotated[
            int | None, _sub("The shorter side afterwards.", "shorter_size", (SCALE_SHORTER,), 512, **SIDE)
        ] = None,
        megapixels: Annotated[
            float | None,
            _sub(
                "Target total megapixels (1.0 is 1024×1024).",
                "megapixels",
                (SCALE_TOTAL_PIXELS,),
                1.0,
                min=0.01,
                max=16.0,
                step=0.01,
            ),
        ] = None,
        match: Annotated[
            ImageOrMask | None,
            Input("The image or mask whose size to take.", name="resize_type.match", shown_for=(MATCH_SIZE,)),
        ] = None,
        crop: Annotated[
            str | None,
            Input(
                "On an aspect mismatch: disabled stretches, center crops.",
                choices=CROP_METHODS,
                name="resize_type.crop",
                shown_for=(SCALE_DIMENSIONS, MATCH_SIZE),
                extra={"default": "center"},
                publish_default=True,
            ),
        ] = None,
        multiple: Annotated[
            int | None,
            _sub(
                "Make both sides divisible by this.",
                "multiple",
                (SCALE_TO_MULTIPLE,),
                8,
                min=1,
                max=MAX_RESOLUTION,
                step=1,
            ),
        ] = None,
    ) -> Annotated[ImageOrMask, Output("resized")]:
        values = {
            "width": width if width is not None else 512,
            "height": height if height is not None else 512,
            "multiplier": multiplier if multiplier is not None else 1.0,
            "longer_size": longer_size if longer_size is not None else 512,
            "shorter_size": shorter_size if shorter_size is not None else 512,
            "megapixels": megapixels if megapixels is not None else 1.0,
        }
        crop = crop or "center"
        if resize_type == SCALE_TO_MULTIPLE:
            return to_multiple(source, multiple if multiple is not None else 8, scale_method)
        if resize_type == MATCH_SIZE:
            if match is None:
                raise ValueError(
                    "ResizeImageMaskNode: input 'resize_type.match' is required for 'match size'"
                )
            return _resample(source, *_size_of(match), scale_method, crop)
        if resize_type == SCALE_DIMENSIONS and values["width"] == 0 and values["height"] == 0:
            return source
        new_w, new_h = target_size(resize_type, *_size_of(source), values)
        return _resample(
            source, new_w, new_h, scale_method, crop if resize_type == SCALE_DIMENSIONS else "disabled"
        )
