"""ControlNetApplySD3 (ComfyUI's deprecated "Apply Controlnet with VAE", `comfy_extras.nodes_sd3`): Apply
ControlNet with the VAE as a required input, which SD3 and Flux ControlNet graphs of ComfyUI_examples use."""

from __future__ import annotations

from typing import Annotated

from engine.native import Conditioning, Image, Input, Node, Vae
from nodes.conditioning.controlnet import END, START, STRENGTH, ApplyOutputs, apply_controlnet
from nodes.loaders.controlnet import ControlNetType


class ControlNetApplySD3(Node):
    """Deprecated (use Apply ControlNet, whose VAE is optional): apply a ControlNet to the positive and
    negative conditioning, its hint encoded by the VAE where the ControlNet works on latents."""

    display_name = "Apply Controlnet with VAE"
    category = "conditioning/controlnet"
    deprecated = True

    def run(
        self,
        positive: Annotated[Conditioning, Input("The positive conditioning.")],
        negative: Annotated[Conditioning, Input("The negative conditioning.")],
        control_net: Annotated[ControlNetType, Input("The ControlNet.")],
        vae: Annotated[Vae, Input("The VAE of the model the ControlNet steers.")],
        image: Annotated[Image, Input("The hint image (edges, depth, pose...).")],
        strength: Annotated[float, STRENGTH] = 1.0,
        start_percent: Annotated[float, START] = 0.0,
        end_percent: Annotated[float, END] = 1.0,
    ) -> ApplyOutputs:
        return ApplyOutputs(
            *apply_controlnet(
                positive, negative, control_net, image, strength, start_percent, end_percent, vae
            )
        )
