"""SD3's per-encoder text node (ComfyUI's CLIPTextEncodeSD3)."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Clip, Conditioning, Input, Node
from nodes.conditioning.text import NO_CLIP, prompt_text

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
        clip_l: Annotated[str, prompt_text("Prompt for CLIP-L.")],
        clip_g: Annotated[str, prompt_text("Prompt for CLIP-G.")],
        t5xxl: Annotated[str, prompt_text("Prompt for T5-XXL.")],
        empty_padding: Annotated[str, PADDING] = "none",
    ) -> Conditioning:
        if clip is None:
            raise RuntimeError(NO_CLIP)
        if clip.family != "sd3":
            raise ValueError(
                f"CLIPTextEncodeSD3 needs an SD3 CLIP (TripleCLIPLoader or type sd3); got {clip.family}"
            )
        return clip.encode_from_tokens_scheduled(_sd3_tokens(clip, clip_l, clip_g, t5xxl, empty_padding))


def _sd3_tokens(clip: Any, clip_l: str, clip_g: str, t5xxl: str, empty_padding: str) -> dict[str, Any]:
    """One prompt per encoder, as ComfyUI: with "none" an empty prompt gives no windows; CLIP-L's and
    CLIP-G's windows are evened out with empty ones, since they are encoded side by side."""
    skip = empty_padding == "none"
    tokens = clip.tokenize(clip_g)
    if skip and not clip_g:
        tokens["g"] = []
    tokens["l"] = [] if skip and not clip_l else clip.tokenize(clip_l)["l"]
    tokens["t5xxl"] = [] if skip and not t5xxl else clip.tokenize(t5xxl)["t5xxl"]
    if len(tokens["l"]) != len(tokens["g"]):
        empty = clip.tokenize("")
        while len(tokens["l"]) < len(tokens["g"]):
            tokens["l"] += empty["l"]
        while len(tokens["l"]) > len(tokens["g"]):
            tokens["g"] += empty["g"]
    return tokens
