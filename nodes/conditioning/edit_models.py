"""ReferenceLatent (ComfyUI's `comfy_extras.nodes_edit_model`): the guiding latents of an edit model."""

from __future__ import annotations

from typing import Annotated

from engine.native import Conditioning, Input, Latent, Node


class ReferenceLatent(Node):
    """Add a latent as a reference image to the conditioning; chained, each adds one more. Loom's Flux
    uses them as Flux Kontext does (extra image tokens the model attends to); models that take no
    reference latents leave them unused, as in ComfyUI."""

    category = "advanced/conditioning/edit_models"

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning to add it to.")],
        latent: Annotated[Latent | None, Input("The reference, encoded by the model's VAE.")] = None,
    ) -> Conditioning:
        if latent is None:
            return conditioning
        return [
            [
                cond,
                {**options, "reference_latents": [*options.get("reference_latents", []), latent["samples"]]},
            ]
            for cond, options in conditioning
        ]
