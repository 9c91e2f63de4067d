"""MaskPreview (ComfyUI's `comfy_extras.nodes_mask`): show a mask as a grey image, kept in the temp folder."""

from __future__ import annotations

import random
import string
from typing import Annotated

from engine.context import Context
from engine.native import Input, Mask, Node, Ui
from nodes.image.io import SAVE_HIDDEN, save_images


class MaskPreview(Node):
    """Show masks without keeping them: each as a grey image in the temp folder."""

    category = "mask"
    output_node = True
    hidden = SAVE_HIDDEN

    def run(self, ctx: Context, mask: Annotated[Mask, Input("The masks to show.")]) -> Ui:
        preview = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).movedim(1, -1).expand(-1, -1, -1, 3)
        suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        return Ui(images=save_images(preview, ctx.folders.temp, f"Loom_temp_{suffix}", "temp", ctx, 4))
