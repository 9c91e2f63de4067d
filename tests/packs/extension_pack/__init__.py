"""A pack using what KJNodes and rgthree read at import time: comfy.patcher_extension, wrap_attn,
comfy.ldm.flux.math (imported at module level), the built-in classes' choice attributes, and a
RETURN_TYPES tuple subclass that answers any index past its end."""

from comfy.ldm.flux.math import apply_rope
from comfy.ldm.modules.attention import wrap_attn
from comfy.patcher_extension import CallbacksMP, WrappersMP

import nodes


class AnyTail(tuple):
    """rgthree's ByPassTypeTuple idea: indexes past the end read as "*" (and slices break)."""

    def __getitem__(self, index):
        if index > len(self) - 1:
            return "*"
        return super().__getitem__(index)


class ResizeChoices:
    """Builds its combos from ComfyUI's class attributes, like rgthree's Image Resize."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image_method": (nodes.ImageScale.upscale_methods,),
                "image_crop": (nodes.ImageScale.crop_methods,),
                "latent_method": (nodes.LatentUpscaleBy.upscale_methods,),
            }
        }

    RETURN_TYPES = AnyTail(("STRING",))
    FUNCTION = "go"
    OUTPUT_NODE = True
    CATEGORY = "extension"

    def go(self, image_method, image_crop, latent_method):
        text = f"{image_method}/{image_crop}/{latent_method}"
        return {"ui": {"text": [text]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {"ExtResizeChoices": ResizeChoices}

# Module-level names KJNodes imports; the pack fails to load if any is missing.
IMPORTED = (apply_rope, wrap_attn, CallbacksMP.ON_CLONE, WrappersMP.APPLY_MODEL)
