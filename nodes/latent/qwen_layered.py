"""EmptyQwenImageLayeredLatentImage (ComfyUI's newer `comfy_extras.nodes_qwen`, not in 0.3.64): the empty
latent of Qwen-Image Layered, which generates an image and its RGBA layers together as frames of one
5-D latent [batch, 16, layers + 1, height / 8, width / 8].

Loom samples it with a Qwen-Image Layered diffusion model (`qwen_image_layered*.safetensors`, see
docs/models.md); other models stop with a message naming the latent's shape.
"""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Latent, Node
from nodes.image.basic import MAX_RESOLUTION

PIXELS = Input("In pixels; the latent is 1/8 of it.", min=16, max=MAX_RESOLUTION, step=16)


class EmptyQwenImageLayeredLatentImage(Node):
    """An empty latent for Qwen-Image Layered: the image and `layers` RGBA layers as its frames."""

    display_name = "Empty Qwen Image Layered Latent"
    category = "latent/qwen"

    def run(
        self,
        width: Annotated[int, PIXELS] = 640,
        height: Annotated[int, PIXELS] = 640,
        layers: Annotated[int, Input("Layers besides the image.", min=0, max=MAX_RESOLUTION, step=1)] = 3,
        batch_size: Annotated[int, Input("Number of images.", min=1, max=4096)] = 1,
    ) -> Latent:
        import torch

        return {"samples": torch.zeros([batch_size, 16, layers + 1, height // 8, width // 8])}
