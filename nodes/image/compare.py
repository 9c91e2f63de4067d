"""ImageCompare (ComfyUI's `comfy_extras.nodes_image_compare`, newer than 0.3.64): two images shown on one
slider in the front end; both are kept in the temp folder as previews are."""

from __future__ import annotations

import random
import string
from typing import Annotated, Any

from engine.context import Context
from engine.native import Image, Input, Node, Socket, Ui
from nodes.image.io import SAVE_HIDDEN, save_images

# The front end's slider: a widget with no value of its own (ComfyUI's IO.ImageCompare, socketless). It is
# published optional because the front end stores no value for it, so a prompt never carries one.
CompareView = Annotated[Any, Socket("IMAGECOMPARE")]


class ImageCompare(Node):
    """Compares two images side by side with a slider."""

    display_name = "Image Compare"
    category = "image"
    output_node = True
    experimental = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        image_a: Annotated[Image | None, Input("The first image.")] = None,
        image_b: Annotated[Image | None, Input("The second image.")] = None,
        compare_view: Annotated[
            CompareView | None, Input("The slider (front end only).", extra={"socketless": True})
        ] = None,
    ) -> Ui:
        shown: dict[str, list[dict[str, str]]] = {"a_images": [], "b_images": []}
        for key, images, prefix in (("a_images", image_a, "a"), ("b_images", image_b, "b")):
            if images is not None and len(images) > 0:
                suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
                name = f"comfy.compare.{prefix}_temp_{suffix}"
                shown[key] = save_images(images, ctx.folders.temp, name, "temp", ctx, 1)
        return Ui(**shown)
