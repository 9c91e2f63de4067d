"""Empty latents for the 16-channel VAEs of SD3 and Flux."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Latent, Node
from nodes.image.basic import MAX_RESOLUTION

PIXELS = Input("In pixels; the latent is 1/8 of it.", min=16, max=MAX_RESOLUTION, step=16)


class EmptySD3LatentImage(Node):
    """A batch of empty 16-channel latents (SD3, Flux) to start text-to-image sampling from."""

    category = "latent/sd3"

    def run(
        self,
        width: Annotated[int, PIXELS] = 1024,
        height: Annotated[int, PIXELS] = 1024,
        batch_size: Annotated[int, Input("Number of images.", min=1, max=4096)] = 1,
    ) -> Latent:
        import torch

        return {"samples": torch.zeros([batch_size, 16, height // 8, width // 8])}
