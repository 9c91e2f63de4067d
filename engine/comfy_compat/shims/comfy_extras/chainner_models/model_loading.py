"""ComfyUI's comfy_extras.chainner_models.model_loading: an upscale model from a state dict, through
spandrel (ComfyUI's deprecated name for what its UpscaleModelLoader does)."""

from __future__ import annotations

from typing import Any

__all__ = ["load_state_dict"]


def load_state_dict(state_dict: dict[str, Any]) -> Any:
    """spandrel's model descriptor for the architecture it recognises in `state_dict`, in eval mode."""
    import spandrel

    return spandrel.ModelLoader().load_from_state_dict(state_dict).eval()
