"""Qwen-Image conditioning: TextEncodeQwenImageEdit (ComfyUI's `comfy_extras.nodes_qwen`), text path."""

from __future__ import annotations

from typing import Annotated

from engine.native import Clip, Conditioning, Image, Input, Node, Vae


class TextEncodeQwenImageEdit(Node):
    """Encode an edit instruction for Qwen-Image Edit. Loom loads Qwen2.5-VL's language model only, so the
    instruction is encoded as text; an input image (which ComfyUI feeds through the vision tower and the
    VAE) is refused with a message rather than silently ignored."""

    category = "advanced/conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("Qwen-Image's text encoder (CLIPLoader type qwen_image).")],
        prompt: Annotated[str, Input("The instruction.", multiline=True, extra={"dynamicPrompts": True})],
        vae: Annotated[Vae | None, Input("Encodes the image as a reference latent.")] = None,
        image: Annotated[Image | None, Input("The image to edit.")] = None,
    ) -> Conditioning:
        from nodes.conditioning.text import NO_CLIP

        if clip is None:
            raise RuntimeError(NO_CLIP)
        if clip.family != "qwen_image":
            raise ValueError(
                f"TextEncodeQwenImageEdit: input 'clip' must be Qwen-Image's text encoder "
                f"(CLIPLoader type qwen_image); got a {clip.family} CLIP"
            )
        if image is not None:
            raise ValueError(
                "TextEncodeQwenImageEdit: input 'image' is not supported by Loom yet: Qwen2.5-VL's vision "
                "tower is not loaded, so only the text prompt can be encoded (leave 'image' unconnected)"
            )
        return clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
