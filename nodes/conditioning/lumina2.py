"""Lumina Image 2.0's text node (ComfyUI's CLIPTextEncodeLumina2): one of the two system prompts Lumina 2
was trained with, then `<Prompt Start>` and the user's prompt, encoded whole."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Conditioning, Input, Node
from nodes.conditioning.text import NO_CLIP, prompt_text

SYSTEM_PROMPTS = {
    "superior": "You are an assistant designed to generate superior images with the superior degree of "
    "image-text alignment based on textual prompts or user prompts.",
    "alignment": "You are an assistant designed to generate high-quality images with the highest degree of "
    "image-text alignment based on textual prompts.",
}
SYSTEM_PROMPT_TIP = (
    "Lumina2 provide two types of system prompts:"
    f"Superior: {SYSTEM_PROMPTS['superior']} Alignment: {SYSTEM_PROMPTS['alignment']}"
)


def lumina2_prompt(system_prompt: str, user_prompt: str) -> str:
    """The text Lumina 2's encoder sees: the system prompt, `<Prompt Start>`, the user's prompt."""
    return f"{SYSTEM_PROMPTS[system_prompt]} <Prompt Start> {user_prompt}"


class CLIPTextEncodeLumina2(Node):
    """Encodes a system prompt and a user prompt using a CLIP model into an embedding that can be used to
    guide the diffusion model towards generating specific images."""

    display_name = "CLIP Text Encode for Lumina2"
    category = "conditioning"

    def run(
        self,
        system_prompt: Annotated[str, Input(SYSTEM_PROMPT_TIP, choices=tuple(SYSTEM_PROMPTS))],
        user_prompt: Annotated[str, prompt_text("The text to be encoded.")],
        clip: Annotated[Clip, Input("The CLIP model used for encoding the text.")],
    ) -> Conditioning:
        if clip is None:
            raise RuntimeError(NO_CLIP)
        tokens = clip.tokenize(lumina2_prompt(system_prompt, user_prompt))
        return clip.encode_from_tokens_scheduled(tokens)
