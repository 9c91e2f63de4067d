"""The MODEL of Lumina Image 2.0 (diffusers' Lumina2Transformer2DModel, loaded by engine.models.lumina2).

As ComfyUI 0.3.64's Lumina2 (model_base.Lumina2 over comfy.ldm.lumina.NextDiT): a FLOW model sampled with
ModelSamplingDiscreteFlow (shift 6, multiplier 1, so the timestep is sigma); the network is given
t = 1 - sigma and predicts x0 - noise, so its output is negated into the velocity the flow sampling
expects. The caption is taken whole (ComfyUI's Gemma prompt has no padding, so its attention mask is all
ones and only the token count reaches the model); the latent is padded to whole 2×2 patches. As ComfyUI's
NextDiT, the call runs inside the DIFFUSION_MODEL wrappers, with that forward's arguments.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.dit_patches import dit_patches
from engine.diffusion.flow_models import _UnpooledFlow
from engine.diffusion.flow_tokens import pad_to_patches


class Lumina2(_UnpooledFlow):
    """Lumina Image 2.0 and its fine-tunes (Neta Lumina)."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.cap_feat_dim)

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        if control is not None:
            raise ValueError("Loom's Lumina 2 model takes no ControlNet residuals")
        args = (x, timestep, context, context.shape[1], None)
        return self.through_wrappers(
            self.lumina2_forward, options, *args, control=None, transformer_options=options
        )

    def lumina2_forward(
        self,
        x: Any,
        timesteps: Any,
        context: Any,
        num_tokens: int,
        attention_mask: Any = None,
        **kwargs: Any,
    ) -> Any:
        """The prediction, with the arguments of ComfyUI's NextDiT forward (what a DIFFUSION_MODEL wrapper
        continues with): latent, timestep (sigma), caption states, their token count, their mask (None: all
        tokens), and transformer_options among the keywords."""
        options = kwargs.get("transformer_options") or {}
        with dit_patches(self.diffusion_model, self.family, options, x):
            mask = None if attention_mask is None else attention_mask[:, :num_tokens]
            return self._forward(x, timesteps, context[:, :num_tokens], {"attention_mask": mask})

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
