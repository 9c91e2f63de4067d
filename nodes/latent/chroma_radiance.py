"""Empty latents for Chroma Radiance, which samples the RGB image itself (ComfyUI's
`comfy_extras.nodes_chroma_radiance`)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Latent, Node
from nodes.image.basic import MAX_RESOLUTION

PIXELS = Input("In pixels; the latent is the image itself.", min=16, max=MAX_RESOLUTION, step=16)


class EmptyChromaRadianceLatentImage(Node):
    """A batch of empty 3-channel, full-resolution latents for Chroma Radiance."""

    category = "latent/chroma_radiance"

    def run(
        self,
        width: Annotated[int, PIXELS] = 1024,
        height: Annotated[int, PIXELS] = 1024,
        batch_size: Annotated[int, Input("Number of images.", min=1, max=4096)] = 1,
    ) -> Latent:
        import torch

        return {"samples": torch.zeros([batch_size, 3, height, width])}
