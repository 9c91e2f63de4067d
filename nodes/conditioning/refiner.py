"""SDXL refiner text encoding: the prompt plus the aesthetic score and size the refiner was trained on."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Conditioning, Input, Node
from nodes.conditioning.text import NO_CLIP, prompt_text
from nodes.image.basic import MAX_RESOLUTION

SIZE = Input("Size hint in pixels that the refiner is conditioned on.", min=0, max=MAX_RESOLUTION)


class CLIPTextEncodeSDXLRefiner(Node):
    """Encode a prompt for the SDXL refiner with its aesthetic score (6 is ComfyUI's positive default; 2.5
    is usual for the negative) and the image size."""

    category = "advanced/conditioning"

    def run(  # keyword-only: ComfyUI's input order puts the required text and clip last
        self,
        *,
        ascore: Annotated[float, Input("Aesthetic score.", min=0.0, max=1000.0, step=0.01)] = 6.0,
        width: Annotated[int, SIZE] = 1024,
        height: Annotated[int, SIZE] = 1024,
        text: Annotated[str, prompt_text("The prompt.")],
        clip: Annotated[Clip, Input("The refiner's text encoder.")],
    ) -> Conditioning:
        if clip is None:
            raise RuntimeError(NO_CLIP)
        return clip.encode_from_tokens_scheduled(
            clip.tokenize(text), add_dict={"aesthetic_score": ascore, "width": width, "height": height}
        )
