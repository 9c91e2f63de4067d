"""Flux 3 (Klein) as a MODEL: diffusers' `Flux3Transformer2DModel` called as its pipeline calls it.

The latent comes patchified from Flux.2's VAE (128 channels at 1/16 of the image, the same VAE and latent
format), so each latent pixel is one token. Position ids are 4-D (frame, row, column, l): the generated
image's (0, row / 2, column / 2, 0) (the model was trained with rows and columns at half scale), the n-th
reference's (0, row / 2, column / 2, -n) (ReferenceMultiLatent / ReferenceLatent, the n-th from 1), the
prompt's (0, 0, 0, k). References are a mode of their own, modulated at timestep 0; only the generated
image's tokens come out. The timestep is sigma (the network scales it by 1000).

The distilled Klein is a flow map: each call also embeds the timestep the step jumps to. Loom takes it
from the sampler's schedule (`transformer_options["sample_sigmas"]`): the next sigma of the schedule below
the current one, 0 after the last, which is what diffusers' distilled pipeline passes for its Euler steps.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.batching import reference_shapes, stacked_references
from engine.diffusion.flow_base import FluxFamily
from engine.diffusion.flow_models import _UnpooledFlow
from engine.diffusion.flow_tokens import axes4_ids, pixel_latent, pixel_tokens, text_ids4

ROPE_SCALE = 0.5


class Flux3(FluxFamily, _UnpooledFlow):
    """Flux 3 Klein, base and distilled: ComfyUI's Flux call with the text context alone (no pooled vector,
    no guidance input)."""

    NAME = "Flux 3"

    def context_width(self) -> int:
        return int(self.diffusion_model.config.joint_attention_dim)

    def condition_key(self, entry: dict[str, Any]) -> tuple[Any, ...]:
        """Entries batch together only with reference latents of the same shapes (token counts)."""
        return reference_shapes(entry)

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        stacked = stacked_references(entries, batch, self.process_latent_in, crop.device)
        return {"ref_latents": stacked}

    def _flux_call(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        y: Any,
        guidance: Any,
        ref_latents: Any,
        options: dict[str, Any],
        **kwargs: Any,
    ) -> Any:
        """The distilled flow map also takes the timestep the step jumps to, from the sampler's schedule."""
        target = None
        if self.diffusion_model.config.flow_map:
            target = target_timestep(timestep, options.get("sample_sigmas"))
        return self.forward_tokens(x, timestep, context, ref_latents or [], target)

    def forward_tokens(self, x: Any, timestep: Any, context: Any, refs: list[Any], target: Any = None) -> Any:
        """The velocity of latent `x` [B, C, H, W] at `timestep` (sigma) for text `context` [B, N, D]."""
        import torch

        height, width = x.shape[-2:]
        cond_tokens = cond_ids = None
        if refs:
            tokens, ids = [], []
            for index, ref in enumerate(refs, start=1):
                ref = ref.to(x.device, x.dtype)
                tokens.append(pixel_tokens(ref))
                ids.append(image_ids(ref.shape[-2], ref.shape[-1], -index, x))
            cond_tokens, cond_ids = torch.cat(tokens, dim=1), torch.cat(ids)
        out = self.diffusion_model(
            hidden_states=pixel_tokens(x),
            encoder_hidden_states=context.to(x.dtype),
            timestep=timestep.to(x.dtype),
            img_ids=image_ids(height, width, 0, x),
            txt_ids=text_ids4(context.shape[1], x, torch.float32),
            image_cond_hidden_states=cond_tokens,
            image_cond_ids=cond_ids,
            target_timestep=None if target is None else target.to(x.dtype),
            return_dict=False,
        )[0]
        return pixel_latent(out, height, width)


def target_timestep(timestep: Any, schedule: Any) -> Any:
    """Per row, the largest sigma of the sampler's schedule below the row's sigma (0 when none)."""
    import torch

    if schedule is None:
        raise ValueError(
            "the distilled Flux 3 Klein is a flow map: it needs the sampler's sigmas to know where each step "
            "goes; sample it with KSampler or SamplerCustom (transformer_options['sample_sigmas'] is unset)"
        )
    sigmas = schedule.to(timestep.device, torch.float32).flatten()
    current = timestep.float()[:, None]
    below = torch.where(sigmas[None, :] < current - 1e-6, sigmas[None, :], torch.zeros_like(sigmas[None, :]))
    return below.max(dim=1).values.clamp(min=0.0)


def image_ids(height: int, width: int, l_coord: int, like: Any) -> Any:
    """[height·width, 4] ids (0, row / 2, column / 2, l) of a latent's tokens, in float32."""
    import torch

    return axes4_ids(height, width, like, torch.float32, scale=ROPE_SCALE, last=float(l_coord))
