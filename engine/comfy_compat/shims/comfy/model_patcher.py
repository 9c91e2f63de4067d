"""ComfyUI's comfy.model_patcher: MODEL is Loom's ModelPatcher (engine.diffusion.model_patcher)."""

from engine.diffusion.model_options import (
    create_model_options_clone,
    set_model_options_patch_replace,
    set_model_options_post_cfg_function,
    set_model_options_pre_cfg_function,
)
from engine.diffusion.model_patcher import ModelPatcher

__all__ = [
    "ModelPatcher",
    "create_model_options_clone",
    "set_model_options_patch_replace",
    "set_model_options_post_cfg_function",
    "set_model_options_pre_cfg_function",
]
