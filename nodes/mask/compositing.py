"""ComfyUI's alpha-channel nodes (comfy_extras.nodes_compositing): an IMAGE's alpha as a MASK and back.

ComfyUI's masks mark what is transparent, so alpha = 1 - mask both ways.
"""

from __future__ import annotations

from typing import Annotated

from engine.native import Image, Input, Mask, Node
from nodes.image.io import ImageAndMask


class SplitImageWithAlpha(Node):
    """The colour channels of an image, and 1 - its alpha as a mask (all 0 for an image without one)."""

    category = "mask/compositing"
    display_name = "Split Image with Alpha"

    def run(self, image: Annotated[Image, Input("An RGB or RGBA image.")]) -> ImageAndMask:
        import torch

        alpha = image[..., 3] if image.shape[-1] > 3 else torch.ones_like(image[..., 0])
        return ImageAndMask(image[..., :3], 1.0 - alpha)


class JoinImageWithAlpha(Node):
    """An RGBA image: the image's colours with alpha = 1 - mask (the mask resized to the image
    bilinearly); the batch is the shorter of the two."""

    category = "mask/compositing"
    display_name = "Join Image with Alpha"

    def run(
        self,
        image: Annotated[Image, Input("The colours (an alpha channel it has is replaced).")],
        alpha: Annotated[Mask, Input("What is transparent (1) or opaque (0).")],
    ) -> Image:
        import torch

        batch = min(len(image), len(alpha))
        flat = alpha.reshape(-1, 1, alpha.shape[-2], alpha.shape[-1])
        resized = torch.nn.functional.interpolate(
            flat, size=tuple(image.shape[1:3]), mode="bilinear"
        ).squeeze(1)
        opacity = 1.0 - resized
        return torch.cat([image[:batch, :, :, :3], opacity[:batch].unsqueeze(-1)], dim=-1)
