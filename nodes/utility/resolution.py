"""ResolutionSelector (ComfyUI's `comfy_extras.nodes_resolution`, newer than 0.3.64): a width and height
from an aspect ratio and a pixel budget, for the empty latent of a text-to-image graph."""

from __future__ import annotations

import math
from typing import Annotated, NamedTuple

from engine.native import Input, Node

# ComfyUI's choices, in its order (also the order the front end lists them).
ASPECT_RATIOS = {
    "1:1 (Square)": (1, 1),
    "3:2 (Photo)": (3, 2),
    "4:3 (Standard)": (4, 3),
    "16:9 (Widescreen)": (16, 9),
    "21:9 (Ultrawide)": (21, 9),
    "2:3 (Portrait Photo)": (2, 3),
    "3:4 (Portrait Standard)": (3, 4),
    "9:16 (Portrait Widescreen)": (9, 16),
}

# ComfyUI marks these inputs advanced: the front end folds them away.
ADVANCED = {"advanced": True}


class Resolution(NamedTuple):
    width: int
    height: int


def resolution(aspect_ratio: str, megapixels: float, multiple: int = 8, minimum: int = 256) -> Resolution:
    """Sides in the ratio whose product is `megapixels` × 1024², each rounded to a multiple; if a side
    falls below `minimum`, the smallest exact multiple of the ratio with both sides multiples of
    `multiple` and neither below `minimum`."""
    w_ratio, h_ratio = ASPECT_RATIOS[aspect_ratio]
    scale = math.sqrt(megapixels * 1024 * 1024 / (w_ratio * h_ratio))
    width = round(w_ratio * scale / multiple) * multiple
    height = round(h_ratio * scale / multiple) * multiple
    if width >= minimum and height >= minimum:
        return Resolution(width, height)
    # k·ratio has both sides multiples of `multiple` exactly when k is a multiple of this step.
    step_w, step_h = multiple // math.gcd(w_ratio, multiple), multiple // math.gcd(h_ratio, multiple)
    step = math.lcm(step_w, step_h)
    k = math.ceil(math.ceil(max(minimum / w_ratio, minimum / h_ratio)) / step) * step
    return Resolution(w_ratio * k, h_ratio * k)


class ResolutionSelector(Node):
    """Calculate width and height from aspect ratio and megapixel target. Useful for setting up Empty
    Latent Image dimensions."""

    display_name = "Resolution Selector"
    category = "utilities"

    def run(
        self,
        aspect_ratio: Annotated[
            str,
            Input(
                "The aspect ratio for the output dimensions.",
                choices=tuple(ASPECT_RATIOS),
                publish_default=True,
            ),
        ] = "1:1 (Square)",
        megapixels: Annotated[
            float,
            Input("Target total megapixels. 1.0 MP ≈ 1024×1024 for square.", min=0.1, max=16.0, step=0.1),
        ] = 1.0,
        multiple: Annotated[
            int,
            Input(
                "Nearest multiple of the result to set the selected resolution to.",
                min=8,
                max=128,
                step=4,
                extra=ADVANCED,
            ),
        ] = 8,
        minimum: Annotated[
            int,
            Input(
                "Set minimum resolution for any side to be used", min=32, max=4096, step=32, extra=ADVANCED
            ),
        ] = 256,
    ) -> Resolution:
        return resolution(aspect_ratio, megapixels, multiple, minimum)
