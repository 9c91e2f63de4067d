"""HiDream's per-encoder text node (ComfyUI's CLIPTextEncodeHiDream, comfy_extras.nodes_hidream)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Conditioning, Input, Node
from nodes.conditioning.text import NO_CLIP, prompt_text


class CLIPTextEncodeHiDream(Node):
    """Encode one prompt per HiDream text encoder: CLIP-L, CLIP-G, T5-XXL and Llama 3.1."""

    category = "advanced/conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("HiDream's text encoders (QuadrupleCLIPLoader).")],
        clip_l: Annotated[str, prompt_text("Prompt for CLIP-L.")],
        clip_g: Annotated[str, prompt_text("Prompt for CLIP-G.")],
        t5xxl: Annotated[str, prompt_text("Prompt for T5-XXL.")],
        llama: Annotated[str, prompt_text("Prompt for Llama 3.1.")],
    ) -> Conditioning:
        if clip is None:
            raise RuntimeError(NO_CLIP)
        if clip.family != "hidream":
            raise ValueError(
                "CLIPTextEncodeHiDream: input 'clip' needs HiDream's text encoders (QuadrupleCLIPLoader or "
                f"CLIPLoader type hidream); got a {clip.family} CLIP"
            )
        # As ComfyUI: each encoder's windows from its own prompt (CLIP-G's tokenization starts the dict).
        tokens = clip.tokenize(clip_g)
        tokens["l"] = clip.tokenize(clip_l)["l"]
        tokens["t5xxl"] = clip.tokenize(t5xxl)["t5xxl"]
        tokens["llama"] = clip.tokenize(llama)["llama"]
        return clip.encode_from_tokens_scheduled(tokens)
