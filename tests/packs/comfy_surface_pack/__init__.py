"""A pack that imports ComfyUI's Python surface the way popular packs do: module-level imports from
`comfy.*`, `nodes`, `folder_paths`, `node_helpers`, `latent_preview`, `server`; a SaveImage subclass;
built-in nodes called by their ComfyUI FUNCTION; routes and static files added while it imports; and
declarations Loom's checks dislike but ComfyUI registers."""

import comfy.model_management  # noqa: F401 - imported at module level, as packs do
import folder_paths
import latent_preview  # noqa: F401
import node_helpers
from comfy.utils import ProgressBar
from server import BinaryEventTypes, PromptServer

import nodes
from nodes import MAX_RESOLUTION, SaveImage
from nodes import NODE_CLASS_MAPPINGS as BUILTINS

from .routes import setup_routes

setup_routes(PromptServer.instance)


class PrefixedSave(SaveImage):
    """ComfyUI's favourite subclass: SaveImage with a suffix on every file name."""

    def __init__(self):
        super().__init__()
        self.prefix_append = "_surface"

    CATEGORY = "surface"


class BuiltinsByFunction:
    """Calls Loom's built-ins the ComfyUI way: positional arguments in ComfyUI's order."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 8, "min": 1, "max": MAX_RESOLUTION})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "go"
    CATEGORY = "surface"

    def go(self, size):
        ProgressBar(1).update(1)
        (image,) = nodes.EmptyImage().generate(size, size, 1, 0xFF0000)
        (inverted,) = BUILTINS["ImageInvert"]().invert(image)
        return (inverted,)


class ConditioningValues:
    """node_helpers.conditioning_set_values on a conditioning made here."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"strength": ("FLOAT", {"default": 0.5})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "go"
    CATEGORY = "surface"
    OUTPUT_NODE = True

    def go(self, strength):
        import torch

        conditioning = [[torch.zeros(1, 2, 3), {"pooled_output": None}]]
        changed = node_helpers.conditioning_set_values(conditioning, {"strength": strength})
        text = f"{changed[0][1]['strength']}|{conditioning[0][1].get('strength')}"
        return {"ui": {"text": [text]}, "result": (text,)}


class LaxDeclaration:
    """What ComfyUI registers and Loom dislikes: a declared input the function never takes, and more
    RETURN_NAMES than RETURN_TYPES."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "x"})}, "optional": {"unused": ("INT",)}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text", "extra")
    FUNCTION = "go"
    CATEGORY = "surface"

    OUTPUT_NODE = True

    def go(self, text):
        return {"ui": {"text": [text.upper()]}, "result": (text.upper(),)}


class DisplayOnly:
    """A node the front end draws (a note); ComfyUI registers it without FUNCTION."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ()
    CATEGORY = "surface"


class ModelFolders:
    """folder_paths knows every ComfyUI folder kind, custom_nodes included."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "go"
    CATEGORY = "surface"
    OUTPUT_NODE = True

    def go(self):
        kinds = ("custom_nodes", "clip_vision", "text_encoders", "checkpoints")
        found = [k for k in kinds if folder_paths.folder_names_and_paths[k][0]]
        text = ",".join(found) + f"|{int(BinaryEventTypes.PREVIEW_IMAGE)}"
        return {"ui": {"text": [text]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {
    "SurfacePrefixedSave": PrefixedSave,
    "SurfaceBuiltins": BuiltinsByFunction,
    "SurfaceConditioning": ConditioningValues,
    "SurfaceLax": LaxDeclaration,
    "SurfaceNote": DisplayOnly,
    "SurfaceFolders": ModelFolders,
}
WEB_DIRECTORY = "./web"
