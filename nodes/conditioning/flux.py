"""Flux conditioning: the distilled guidance strength travels on the conditioning."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Conditioning, Input, Node
from nodes.conditioning.text import prompt_text

GUIDANCE = Input("Flux dev's distilled guidance strength (its embedded 'cfg').", min=0.0, max=100.0, step=0.1)


class FluxGuidance(Node):
    """Set the guidance strength a guidance-distilled model (Flux dev) is conditioned on."""

    category = "advanced/conditioning/flux"

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning to set it on.")],
        guidance: Annotated[float, GUIDANCE] = 3.5,
    ) -> Conditioning:
        return [[cond, {**options, "guidance": guidance}] for cond, options in conditioning]


class CLIPTextEncodeFlux(Node):
    """Encode Flux's prompts (CLIP-L for the pooled vector, T5-XXL for the sequence) with its guidance."""

    category = "advanced/conditioning/flux"

    def run(
        self,
        clip: Annotated[Clip, Input("Flux's text encoders (DualCLIPLoader type flux).")],
        clip_l: Annotated[str, prompt_text("Prompt for CLIP-L.")],
        t5xxl: Annotated[str, prompt_text("Prompt for T5-XXL.")],
        guidance: Annotated[float, GUIDANCE] = 3.5,
    ) -> Conditioning:
        from nodes.conditioning.text import NO_CLIP

        if clip is None:
            raise RuntimeError(NO_CLIP)
        if clip.family != "flux":
            raise ValueError(
                f"CLIPTextEncodeFlux needs a Flux CLIP (DualCLIPLoader type flux); got {clip.family}"
            )
        tokens = clip.tokenize(clip_l)
        tokens["t5xxl"] = clip.tokenize(t5xxl)["t5xxl"]
        return clip.encode_from_tokens_scheduled(tokens, add_dict={"guidance": guidance})
