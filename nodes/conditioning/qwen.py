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


class TextEncodeQwenImageEditPlus(Node):
    """Encode an edit instruction for Qwen-Image Edit 2509 (up to three images). As TextEncodeQwenImageEdit:
    the text path only; connected images are refused with a message."""

    category = "advanced/conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("Qwen-Image's text encoder (CLIPLoader type qwen_image).")],
        prompt: Annotated[str, Input("The instruction.", multiline=True, extra={"dynamicPrompts": True})],
        vae: Annotated[Vae | None, Input("Encodes the images as reference latents.")] = None,
        image1: Annotated[Image | None, Input("First image.")] = None,
        image2: Annotated[Image | None, Input("Second image.")] = None,
        image3: Annotated[Image | None, Input("Third image.")] = None,
    ) -> Conditioning:
        from nodes.conditioning.text import NO_CLIP

        images = (("image1", image1), ("image2", image2), ("image3", image3))
        connected = [name for name, image in images if image is not None]
        if connected:
            raise ValueError(
                f"TextEncodeQwenImageEditPlus: input '{connected[0]}' is not supported by Loom yet: "
                "Qwen2.5-VL's vision tower is not loaded, so only the text prompt can be encoded "
                "(leave the images unconnected)"
            )
        if clip is None:
            raise RuntimeError(NO_CLIP)
        # ComfyUI uses its edit template whether images are given or not.
        return clip.encode_from_tokens_scheduled(clip.tokenize(prompt, llama_template=EDIT_TEMPLATE))


EDIT_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, "
    "objects, background), then explain how the user's text instruction should alter or modify the image. "
    "Generate a new image that meets the user's requirements while maintaining consistency with the "
    "original input where appropriate.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
