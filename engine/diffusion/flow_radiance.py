"""Chroma Radiance as a MODEL: Chroma's transformer on 16×16 pixel patches and the pixel decoder head.

The latent is the image itself ([B, 3, H, W], −1..1; EmptyChromaRadianceLatentImage and the pixel_space
VAE), padded circularly to whole patches as ComfyUI pads it. Sampling is Chroma's (a Flux-type model: the
timestep is σ, the approximator takes FluxGuidance's `guidance`). ChromaRadianceOptions reaches the head
through `transformer_options["chroma_radiance_options"]` (its `nerf_tile_size`).
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.flow_models import Chroma
from engine.diffusion.flow_tokens import flux_ids, pad_to_patches

OPTIONS_KEY = "chroma_radiance_options"
# The options ChromaRadianceOptions may set, with their types (ComfyUI rejects others by name).
OPTION_TYPES: dict[str, type] = {"nerf_tile_size": int}


def head_options(transformer_options: dict[str, Any]) -> dict[str, Any]:
    """The validated `chroma_radiance_options` of a call (unknown keys or wrong types are errors)."""
    options = transformer_options.get(OPTIONS_KEY) or {}
    unknown = sorted(k for k in options if k not in OPTION_TYPES)
    if unknown:
        raise ValueError(f"unknown key(s) in transformer_options {OPTIONS_KEY}: {', '.join(unknown)}")
    wrong = sorted(k for k, v in options.items() if type(v) is not OPTION_TYPES[k])
    if wrong:
        raise ValueError(f"invalid value(s) in transformer_options {OPTIONS_KEY}: {', '.join(wrong)}")
    return dict(options)


class ChromaRadiance(Chroma):
    """Chroma Radiance (ComfyUI's `chroma_radiance` image model), and its x0 variant."""

    NAME = "Chroma Radiance"

    def _call_extra(self, guidance: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Chroma's, and the head's options from `transformer_options`."""
        return {"guidance": guidance, "head": head_options(options)}

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch
        import torch.nn.functional as F

        from engine.models.chroma import distilled_guidance
        from engine.models.chroma_radiance import NERF_TILE_SIZE

        model = self.diffusion_model
        head = model.nerf_head
        height, width = x.shape[-2:]
        image = pad_to_patches(x, head.patch)
        rows, cols = image.shape[-2] // head.patch, image.shape[-1] // head.patch
        tokens = F.unfold(image, head.patch, stride=head.patch).transpose(1, 2)
        txt_ids = torch.zeros((context.shape[1], 3), device=x.device, dtype=x.dtype)
        with distilled_guidance(model, extra.get("guidance")):
            hidden = model(
                hidden_states=tokens,
                encoder_hidden_states=context,
                timestep=timestep.to(x.dtype),
                img_ids=flux_ids(rows, cols, x),
                txt_ids=txt_ids,
                return_dict=False,
            )[0]
        tile = extra.get("head", {}).get("nerf_tile_size", NERF_TILE_SIZE)
        out = head(image, hidden, tile)[:, :, :height, :width]
        if getattr(model, "is_x0", False):
            # The x0 variant predicts the clean image; the sampler takes the velocity (ComfyUI: σ = t).
            out = (x - out) / timestep.to(out.dtype).view(-1, 1, 1, 1)
        return out
