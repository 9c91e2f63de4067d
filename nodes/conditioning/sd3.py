"""SD3's per-encoder text node (ComfyUI's CLIPTextEncodeSD3)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Conditioning, Input, Node
from nodes.conditioning.text import NO_CLIP

PADDING = Input(
    "none: an empty prompt leaves its encoder out; empty_prompt: encode it as an empty prompt.",
    choices=("none", "empty_prompt"),
)


class CLIPTextEncodeSD3(Node):
    """Encode one prompt per SD3 text encoder: CLIP-L, CLIP-G and T5-XXL."""

    category = "advanced/conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("SD3's text encoders.")],
        clip_l: Annotated[str, Input("Prompt for CLIP-L.", multiline=True)],
        clip_g: Annotated[str, Input("Prompt for CLIP-G.", multiline=True)],
        t5xxl: Annotated[str, Input("Prompt for T5-XXL.", multiline=True)],
        empty_padding: Annotated[str, PADDING] = "none",
    ) -> Conditioning:
        from engine.diffusion.text_encode_flow import encode_flow_prompt

        if clip is None:
            raise RuntimeError(NO_CLIP)
        if clip.family != "sd3":
            raise ValueError(
                f"CLIPTextEncodeSD3 needs an SD3 CLIP (TripleCLIPLoader or type sd3); got {clip.family}"
            )
        skip = empty_padding == "none"
        texts = {
            "clip_l": None if skip and not clip_l else clip_l,
            "clip_g": None if skip and not clip_g else clip_g,
            "t5xxl": None if skip and not t5xxl else t5xxl,
        }
        cond, pooled = encode_flow_prompt(clip, texts)
        return [[cond, {"pooled_output": pooled}]]
