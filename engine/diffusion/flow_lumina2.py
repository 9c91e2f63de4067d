"""The MODEL of Lumina Image 2.0 (diffusers' Lumina2Transformer2DModel, loaded by engine.models.lumina2).

As ComfyUI 0.3.64's Lumina2 (model_base.Lumina2 over comfy.ldm.lumina.NextDiT): a FLOW model sampled with
ModelSamplingDiscreteFlow (shift 6, multiplier 1, so the timestep is sigma); the network is given
t = 1 - sigma and predicts x0 - noise, so its output is negated into the velocity the flow sampling
expects. The caption is taken whole (ComfyUI's Gemma prompt has no padding, so its attention mask is all
ones and only the token count reaches the model); the latent is padded to whole 2×2 patches. As ComfyUI's
NextDiT, the call runs inside the DIFFUSION_MODEL wrappers, with that forward's arguments
(engine.diffusion.flow_models.NextDiT).
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.flow_models import NextDiT
from engine.diffusion.flow_tokens import pad_to_patches


class Lumina2(NextDiT):
    """Lumina Image 2.0 and its fine-tunes (Neta Lumina)."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.cap_feat_dim)

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch

        height, width = x.shape[-2:]
        padded = pad_to_patches(x, int(self.diffusion_model.config.patch_size))
        mask = extra.get("attention_mask")
        if mask is None:
            mask = torch.ones(context.shape[:2], dtype=torch.bool, device=x.device)
        out = self.diffusion_model(
            hidden_states=padded,
            timestep=1.0 - timestep.to(x.dtype),
            encoder_hidden_states=context,
            encoder_attention_mask=mask.bool(),
            return_dict=False,
        )[0]
        return -out[:, :, :height, :width]
