"""T5TokenizerOptions (ComfyUI's `comfy_extras.nodes_cond`, used by the Chroma workflows)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Input, Node

# Every T5-style tokenizer key ComfyUI sets; Loom's T5 windows read `t5xxl_*`.
T5_KEYS = ("t5xxl", "pile_t5xl", "t5base", "mt5xl", "umt5xxl")


class T5TokenizerOptions(Node):
    """Pad T5's token window: at least `min_length` tokens, and `min_padding` pad tokens after the prompt."""

    category = "_for_testing/conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("The CLIP whose T5 tokenizer to set.")],
        min_padding: Annotated[
            int, Input("Pad tokens added after the prompt.", min=0, max=10000, step=1)
        ] = 0,
        min_length: Annotated[int, Input("Shortest token window.", min=0, max=10000, step=1)] = 0,
    ) -> Clip:
        clip = clip.clone()
        for key in T5_KEYS:
            clip.set_tokenizer_option(f"{key}_min_padding", min_padding)
            clip.set_tokenizer_option(f"{key}_min_length", min_length)
        return clip
