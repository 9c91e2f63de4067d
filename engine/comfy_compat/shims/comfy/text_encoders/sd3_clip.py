"""ComfyUI's comfy.text_encoders.sd3_clip.

`SD3ClipModel` is the class of `clip.cond_stage_model` for CLIPs Loom loads for SD3 (CLIP-L + CLIP-G +
T5-XXL, engine.diffusion.clip_models_flow), so `isinstance` answers as in ComfyUI; its encoders are
reached as `clip_l`, `clip_g`, `t5xxl`. Loom builds it from loaded encoders, not from ComfyUI's
constructor flags. Loom runs T5 through its one encoder class, so ComfyUI's `T5XXLModel` exists only
as a name (`isinstance` is False; constructing one raises).
"""

from engine.comfy_compat.unavailable import not_provided
from engine.diffusion.clip_models_flow import SD3ClipModel

T5XXLModel = not_provided(__name__, "T5XXLModel")

__all__ = ["SD3ClipModel", "T5XXLModel"]
