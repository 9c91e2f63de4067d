"""ComfyUI's comfy.clip_vision: CLIP vision encoders as CLIPVisionLoader loads them.

`ClipVisionModel` and `Output` are the classes that travel on Loom's CLIP_VISION and CLIP_VISION_OUTPUT
links (engine.diffusion.clip_vision); `clip_preprocess` is the same preprocessing CLIPVisionEncode uses.
As in ComfyUI, `load` and `load_clipvision_from_sd` return None for a file that holds no vision encoder.
Loom's ClipVisionModel is built from the weights, not from a JSON config path, so packs that construct
one themselves (rather than loading a file) are not served.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.clip_vision import ClipVisionModel, Output, clip_preprocess, clip_vision_from_state
from engine.models.clip_vision import find_layout, hf_state

__all__ = [
    "ClipVisionModel",
    "Output",
    "clip_preprocess",
    "convert_to_transformers",
    "load",
    "load_clipvision_from_sd",
]


def convert_to_transformers(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    """An open_clip `visual.*` state dict under `prefix` renamed to transformers' names (a transformers
    one just loses the prefix)."""
    return hf_state(sd, prefix)


def load_clipvision_from_sd(
    sd: dict[str, Any], prefix: str = "", convert_keys: bool = False
) -> ClipVisionModel | None:
    """The vision encoder under `prefix` of a state dict, or None when there is none (either layout is
    recognised whatever `convert_keys` says)."""
    if find_layout(sd.keys(), prefix) is None:
        return None
    return clip_vision_from_state(sd, prefix)


def load(ckpt_path: str) -> ClipVisionModel | None:
    """A clip_vision file (transformers or open_clip `visual.*` layout), or None if it holds no encoder."""
    from engine.models.files import open_state_dict

    state, metadata = open_state_dict(ckpt_path)
    prefix = "visual." if find_layout(state.keys(), "visual.") else ""
    if find_layout(state.keys(), prefix) is None:
        return None
    return clip_vision_from_state(state, prefix, metadata)
