"""Empty latents for Flux.2: 128 channels (its VAE's 32, patchified 2×2) at 1/16 of the image."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Latent, Node
from nodes.image.basic import MAX_RESOLUTION

PIXELS = Input("In pixels; the latent is 1/16 of it.", min=16, max=MAX_RESOLUTION, step=16)


class EmptyFlux2LatentImage(Node):
    """A batch of empty Flux.2 latents to start text-to-image sampling from."""

    category = "latent"
    display_name = "Empty Flux 2 Latent"

    def run(
        self,
        width: Annotated[int, PIXELS] = 1024,
        height: Annotated[int, PIXELS] = 1024,
        batch_size: Annotated[int, Input("Number of images.", min=1, max=4096)] = 1,
    ) -> Latent:
        import torch

        latent = torch.zeros([batch_size, 128, height // 16, width // 16])
        return {"samples": latent, "downscale_ratio_spacial": 16}
