"""Flux.2 (dev and Klein) as a MODEL: diffusers' `Flux2Transformer2DModel` called as ComfyUI calls its Flux.2.

The latent is already patchified by the VAE (128 channels at 1/16 of the image), so each latent pixel is
one token, with 4-D position ids (frame, row, column, text position): the image's are (0, row, column,
0), the prompt's (0, 0, 0, n). The prompt's sequence is zero-padded at the front to 512 tokens as
ComfyUI's Flux2 does (Flux.2 dev's Mistral prompt is unpadded; Klein's Qwen3 prompt is already 512).
The timestep is sigma (the network scales it by 1000); Flux.2 dev embeds the conditioning's guidance
(FluxGuidance, 3.5 when unset; FluxDisableGuidance leaves it out), Klein has no guidance input.

Reference latents (ReferenceLatent: Flux.2's edits) become extra tokens after the image's, the n-th in
frame 10·n at the origin (ComfyUI's and diffusers' "index" placement with scale 10); only the image's
tokens are kept from the output.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.dit_patches import dit_patches
from engine.diffusion.flow_models import FLUX_DEFAULT_GUIDANCE, FlowTransformer

TEXT_TOKENS = 512
REFERENCE_FRAME_STEP = 10


class Flux2(FlowTransformer):
    """Flux.2 dev and Klein (4B, 9B; base and distilled)."""

    def condition_key(self, entry: dict[str, Any]) -> tuple[Any, ...]:
        """Entries batch together only with reference latents of the same shapes (token counts)."""
        return tuple(tuple(latent.shape) for latent in entry.get("reference_latents") or [])

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        """Each entry's guidance (NaN: disabled) and reference latents, repeated over the batch."""
        import math

        import torch

        guidance = []
        for entry in entries:
            value = entry.get("guidance", FLUX_DEFAULT_GUIDANCE)
            guidance += [math.nan if value is None else float(value)] * batch
        references = [entry.get("reference_latents") or [] for entry in entries]
        stacked = []
        for index in range(len(references[0])):
            parts = [self.process_latent_in(refs[index].to(crop.device).float()) for refs in references]
            stacked.append(torch.cat([_to_batch(part, batch) for part in parts]))
        return {"guidance": torch.tensor(guidance, device=crop.device), "ref_latents": stacked}

    def _check_conditioning(self, context: Any, pooled: Any) -> None:
        width = int(self.diffusion_model.config.joint_attention_dim)
        if context.shape[-1] != width:
            raise ValueError(
                f"this Flux.2 model takes text conditioning {width} wide, but got {context.shape[-1]}: "
                "encode the prompt with this model's text encoder (CLIPLoader type flux2: Mistral Small 3 "
                "for Flux.2 dev, Qwen3 4B for Klein 4B, Qwen3 8B for Klein 9B)"
            )

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        guidance = extra.get("guidance")
        refs = extra.get("ref_latents") or None
        return self.through_wrappers(
            self.flux_forward, options, x, timestep, context, None, guidance, refs, control, options
        )

    def flux_forward(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        y: Any = None,
        guidance: Any = None,
        ref_latents: Any = None,
        control: Any = None,
        transformer_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The prediction, called as ComfyUI calls its Flux.2 model (what a DIFFUSION_MODEL wrapper
        continues with). Loom's Flux.2 takes no control residuals."""
        del y, kwargs
        if control is not None:
            raise ValueError("Loom's Flux.2 model takes no control residuals")
        import torch

        with dit_patches(self.diffusion_model, "flux", transformer_options or {}):
            if guidance is None or not self.diffusion_model.config.guidance_embeds:
                return self._forward_rows(x, timestep, context, None, ref_latents)
            disabled = guidance.isnan()
            if not bool(disabled.any()):
                return self._forward_rows(x, timestep, context, guidance, ref_latents)
            out = torch.empty_like(x)
            # Rows whose guidance is disabled run without the guidance embedding.
            for rows, value in ((disabled, None), (~disabled, guidance)):
                if bool(rows.any()):
                    refs = [r[rows] for r in ref_latents] if ref_latents else None
                    kept = None if value is None else value[rows]
                    out[rows] = self._forward_rows(x[rows], timestep[rows], context[rows], kept, refs)
            return out

    def _forward_rows(self, x: Any, timestep: Any, context: Any, guidance: Any, refs: Any) -> Any:
        import torch

        batch, channels, height, width = x.shape
        tokens = x.reshape(batch, channels, height * width).permute(0, 2, 1)
        img_ids = image_ids(height, width, 0, x)
        image_tokens = tokens.shape[1]
        for index, ref in enumerate(refs or [], start=1):
            ref = ref.to(x.device, x.dtype)
            ref_tokens = ref.reshape(ref.shape[0], ref.shape[1], -1).permute(0, 2, 1)
            tokens = torch.cat([tokens, ref_tokens], dim=1)
            frame = REFERENCE_FRAME_STEP * index
            img_ids = torch.cat([img_ids, image_ids(ref.shape[-2], ref.shape[-1], frame, x)])
        if context.shape[1] < TEXT_TOKENS:
            context = torch.nn.functional.pad(context, (0, 0, TEXT_TOKENS - context.shape[1], 0))
        txt_ids = torch.zeros((context.shape[1], 4), device=x.device, dtype=x.dtype)
        txt_ids[:, 3] = torch.arange(context.shape[1], device=x.device, dtype=x.dtype)
        out = self.diffusion_model(
            hidden_states=tokens,
            encoder_hidden_states=context.to(x.dtype),
            timestep=timestep.to(x.dtype),
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=None if guidance is None else guidance.to(x.dtype),
            return_dict=False,
        )[0]
        return out[:, :image_tokens].permute(0, 2, 1).reshape(batch, -1, height, width)


def image_ids(height: int, width: int, frame: int, like: Any) -> Any:
    """[height·width, 4] ids (frame, row, column, 0) of a latent's tokens."""
    import torch

    ids = torch.zeros((height, width, 4), device=like.device, dtype=like.dtype)
    ids[..., 0] = frame
    ids[..., 1] = torch.arange(height, device=like.device, dtype=like.dtype)[:, None]
    ids[..., 2] = torch.arange(width, device=like.device, dtype=like.dtype)[None, :]
    return ids.reshape(-1, 4)


def _to_batch(tensor: Any, batch: int) -> Any:
    """`tensor` cut or repeated to `batch` rows (ComfyUI's repeat_to_batch_size)."""
    if tensor.shape[0] >= batch:
        return tensor[:batch]
    return tensor.repeat(-(-batch // tensor.shape[0]), *([1] * (tensor.ndim - 1)))[:batch]
