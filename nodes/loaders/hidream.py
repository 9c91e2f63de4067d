"""HiDream's text-encoder loader (ComfyUI's QuadrupleCLIPLoader, comfy_extras.nodes_hidream)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Input, Node
from nodes.loaders.split import _load, text_encoder_files


class QuadrupleCLIPLoader(Node):
    """[Recipes]

    hidream: long clip-l, long clip-g, t5xxl, llama_8b_3.1_instruct (in any order: each file is told by
    its keys and shapes)."""

    display_name = "QuadrupleCLIPLoader"
    category = "advanced/loaders"

    def run(
        self,
        clip_name1: Annotated[str, Input("A text encoder file.", choices=text_encoder_files)],
        clip_name2: Annotated[str, Input("A text encoder file.", choices=text_encoder_files)],
        clip_name3: Annotated[str, Input("A text encoder file.", choices=text_encoder_files)],
        clip_name4: Annotated[str, Input("A text encoder file.", choices=text_encoder_files)],
    ) -> Clip:
        return _load([clip_name1, clip_name2, clip_name3, clip_name4], "hidream")
