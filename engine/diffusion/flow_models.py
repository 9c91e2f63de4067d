"""BaseModel counterparts for the flow-matching transformers: SD3 (MMDiT) and Flux.

`apply_model(x, sigma, c_crossattn=..., added_cond_kwargs={"pooled": ..., "guidance": ...})` returns the
denoised prediction as ComfyUI's do. The sampler's conditioning dicts carry `pooled_output` and, for
Flux dev, `guidance` (FluxGuidance / CLIPTextEncodeFlux); `added_conditions` batches them per entry.
Weights may be stored in fp8 (UNETLoader's weight_dtype) while the computation runs in `compute_dtype`.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.diffusion_model import DiffusionModel, ModelType
from engine.diffusion.dit_patches import dit_patches

FLUX_DEFAULT_GUIDANCE = 3.5


class FlowTransformer(DiffusionModel):
    """A rectified-flow transformer with its flow sampling and 16-channel latent format."""

    # Text and image tokens share one attention: a context repeated to batch it with a longer one would
    # change the output, so the guidance batches only contexts of equal length (ComfyUI's CONDRegular).
    batch_equal_context_lengths = True

    def __init__(
        self, transformer: Any, model_sampling: Any, family: str, latent_format: Any, compute_dtype: Any
    ) -> None:
        super().__init__(transformer, model_sampling, family, latent_format)
        self.model_type = ModelType.FLUX if family in ("flux", "chroma", "qwen_image") else ModelType.FLOW
        self.compute_dtype = compute_dtype
        self.model_config.sampling_settings = {"shift": getattr(model_sampling, "shift", 1.0)}

    def get_dtype(self) -> Any:
        return self.compute_dtype

    def state_dict(self) -> dict[str, Any]:
        """The transformer's weights under diffusers' names, prefixed as ComfyUI prefixes its own."""
        return {"diffusion_model." + k: v for k, v in self.diffusion_model.state_dict().items()}

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        """The pooled text vector (and Flux's guidance) of each entry, repeated over the batch."""
        import torch

        width = self.diffusion_model.config.pooled_projection_dim
        pooled = []
        guidance = []
        for entry in entries:
            vector = entry.get("pooled_output")
            if vector is None:
                vector = torch.zeros((1, width))
            pooled.append(vector.to(crop.device).float().expand(batch, -1))
            guidance += [float(entry.get("guidance", FLUX_DEFAULT_GUIDANCE))] * batch
        return {"pooled": torch.cat(pooled), "guidance": torch.tensor(guidance, device=crop.device)}

    def apply_model(
        self,
        x: Any,
        t: Any,
        c_concat: Any = None,
        c_crossattn: Any = None,
        control: Any = None,
        transformer_options: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        sigma = t
        sampling = self.model_sampling
        x_in = sampling.calculate_input(sigma, x)
        timestep = sampling.timestep(sigma).float().reshape(-1).expand(x.shape[0])
        extra = (
            added_cond_kwargs if added_cond_kwargs is not None else self.added_conditions([{}], x, x.shape[0])
        )
        self._check_conditioning(c_crossattn, extra["pooled"])
        with dit_patches(self.diffusion_model, self.family, transformer_options or {}):
            output = self._forward(
                x_in.to(self.compute_dtype), timestep, c_crossattn.to(self.compute_dtype), extra
            )
        return sampling.calculate_denoised(sigma, output.float(), x)

    def _check_conditioning(self, context: Any, pooled: Any) -> None:
        """Conditioning from another family's text encoders gets a message, not a shape error deep inside."""
        config = self.diffusion_model.config
        if (
            context.shape[-1] != config.joint_attention_dim
            or pooled.shape[-1] != config.pooled_projection_dim
        ):
            raise ValueError(
                f"this {self.family} model takes text conditioning {config.joint_attention_dim} wide with a "
                f"pooled vector of {config.pooled_projection_dim}, but got {context.shape[-1]} and "
                f"{pooled.shape[-1]}: "
                f"encode the prompt with the text encoders of this model (CLIP type {self.family})"
            )

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        raise NotImplementedError


class SD3(FlowTransformer):
    """SD3 / SD3.5 MMDiT (diffusers' SD3Transformer2DModel); the timestep is sigma × 1000."""

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        return self.diffusion_model(
            hidden_states=x,
            encoder_hidden_states=context,
            pooled_projections=extra["pooled"].to(x.dtype),
            timestep=timestep.to(x.dtype),
            return_dict=False,
        )[0]


class Flux(FlowTransformer):
    """Flux.1 (diffusers' FluxTransformer2DModel): 2×2 patches packed into tokens with (0, row, column)
    position ids; the timestep is sigma (the model scales it by 1000) and dev embeds the guidance."""

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch
        import torch.nn.functional as F

        batch, channels, height, width = x.shape
        padded = F.pad(x, (0, width % 2, 0, height % 2), mode="circular")
        rows, cols = padded.shape[2] // 2, padded.shape[3] // 2
        tokens = padded.reshape(batch, channels, rows, 2, cols, 2).permute(0, 2, 4, 1, 3, 5)
        tokens = tokens.reshape(batch, rows * cols, channels * 4)
        img_ids = torch.zeros((rows, cols, 3), device=x.device, dtype=x.dtype)
        img_ids[..., 1] = torch.arange(rows, device=x.device, dtype=x.dtype)[:, None]
        img_ids[..., 2] = torch.arange(cols, device=x.device, dtype=x.dtype)[None, :]
        txt_ids = torch.zeros((context.shape[1], 3), device=x.device, dtype=x.dtype)
        guidance = extra["guidance"].to(x.dtype) if self.diffusion_model.config.guidance_embeds else None
        out = self.diffusion_model(
            hidden_states=tokens,
            encoder_hidden_states=context,
            pooled_projections=extra["pooled"].to(x.dtype),
            timestep=timestep.to(x.dtype),
            img_ids=img_ids.reshape(-1, 3),
            txt_ids=txt_ids,
            guidance=guidance,
            return_dict=False,
        )[0]
        out = out.reshape(batch, rows, cols, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(batch, channels, rows * 2, cols * 2)[:, :, :height, :width]


class _UnpooledFlow(FlowTransformer):
    """A flow transformer conditioned on a text sequence alone (no pooled vector, no guidance)."""

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        return {}

    def _check_conditioning(self, context: Any, pooled: Any) -> None:
        width = self.context_width()
        if context.shape[-1] != width:
            raise ValueError(
                f"this {self.family} model takes text conditioning {width} wide, "
                f"but got {context.shape[-1]}: "
                f"encode the prompt with the text encoder of this model (CLIPLoader type "
                f"{CLIP_TYPE_OF.get(self.family, self.family)})"
            )

    def apply_model(
        self,
        x: Any,
        t: Any,
        c_concat: Any = None,
        c_crossattn: Any = None,
        control: Any = None,
        transformer_options: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        sampling = self.model_sampling
        timestep = sampling.timestep(t).float().reshape(-1).expand(x.shape[0])
        self._check_conditioning(c_crossattn, None)
        with dit_patches(self.diffusion_model, self.family, transformer_options or {}):
            output = self._forward(
                sampling.calculate_input(t, x).to(self.compute_dtype),
                timestep,
                c_crossattn.to(self.compute_dtype),
                added_cond_kwargs or {},
            )
        return sampling.calculate_denoised(t, output.float(), x)

    def context_width(self) -> int:
        raise NotImplementedError


# The CLIPLoader type whose text encoder each family takes (for messages).
CLIP_TYPE_OF = {"zimage": "lumina2", "qwen_image": "qwen_image", "chroma": "chroma"}


def _pad_to_patches(x: Any, patch: int) -> Any:
    """Pad height and width to whole patches, circularly as ComfyUI's `pad_to_patch_size`."""
    import torch.nn.functional as F

    return F.pad(x, (0, (-x.shape[3]) % patch, 0, (-x.shape[2]) % patch), mode="circular")


class ZImage(_UnpooledFlow):
    """Z-Image (diffusers' ZImageTransformer2DModel). ComfyUI samples it as AuraFlow (timestep = sigma);
    the network takes t = 1 - sigma and predicts x0 - noise, so its output is negated into the velocity."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.cap_feat_dim)

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch

        height, width = x.shape[-2:]
        padded = _pad_to_patches(x, 2)
        images = list(padded.unsqueeze(2).unbind(0))  # one [C, 1, H, W] per sample
        captions = list(context.unbind(0))
        out = self.diffusion_model(images, 1.0 - timestep.to(x.dtype), captions, return_dict=False)[0]
        velocity = -torch.stack([o.squeeze(1) for o in out])
        return velocity[:, :, :height, :width]


def _pack(x: Any) -> tuple[Any, int, int]:
    """[B, C, H, W] → [B, (H/2)(W/2), 4C] tokens of 2×2 patches (Flux's and Qwen-Image's packing)."""
    padded = _pad_to_patches(x, 2)
    batch, channels = x.shape[:2]
    rows, cols = padded.shape[2] // 2, padded.shape[3] // 2
    tokens = padded.reshape(batch, channels, rows, 2, cols, 2).permute(0, 2, 4, 1, 3, 5)
    return tokens.reshape(batch, rows * cols, channels * 4), rows, cols


def _unpack(out: Any, x: Any, rows: int, cols: int) -> Any:
    batch, channels, height, width = x.shape
    out = out.reshape(batch, rows, cols, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(batch, channels, rows * 2, cols * 2)[:, :, :height, :width]


def _flux_ids(rows: int, cols: int, x: Any) -> Any:
    import torch

    ids = torch.zeros((rows, cols, 3), device=x.device, dtype=x.dtype)
    ids[..., 1] = torch.arange(rows, device=x.device, dtype=x.dtype)[:, None]
    ids[..., 2] = torch.arange(cols, device=x.device, dtype=x.dtype)[None, :]
    return ids.reshape(-1, 3)


class Chroma(_UnpooledFlow):
    """Chroma (diffusers' ChromaTransformer2DModel): Flux's packing and position ids, T5 context only, the
    timestep is sigma (the model scales it by 1000) and the distilled guidance input is the conditioning's
    `guidance` (FluxGuidance), 0 when unset, as ComfyUI's."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.joint_attention_dim)

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        import torch

        guidance = [float(entry.get("guidance") or 0.0) for entry in entries for _ in range(batch)]
        return {"guidance": torch.tensor(guidance, device=crop.device)}

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch

        from engine.models.chroma import distilled_guidance

        tokens, rows, cols = _pack(x)
        txt_ids = torch.zeros((context.shape[1], 3), device=x.device, dtype=x.dtype)
        with distilled_guidance(self.diffusion_model, extra.get("guidance")):
            out = self.diffusion_model(
                hidden_states=tokens,
                encoder_hidden_states=context,
                timestep=timestep.to(x.dtype),
                img_ids=_flux_ids(rows, cols, x),
                txt_ids=txt_ids,
                return_dict=False,
            )[0]
        return _unpack(out, x, rows, cols)


class QwenImage(_UnpooledFlow):
    """Qwen-Image (diffusers' QwenImageTransformer2DModel): 2×2 patches packed into tokens, the image's
    shape given for its centred rotary positions; the timestep is sigma (scaled by 1000 inside)."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.joint_attention_dim)

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        tokens, rows, cols = _pack(x)
        # No mask: ComfyUI drops an all-ones mask, and its prompts are never padded.
        out = self.diffusion_model(
            hidden_states=tokens,
            encoder_hidden_states=context,
            timestep=timestep.to(x.dtype),
            img_shapes=[[(1, rows, cols)]] * x.shape[0],
            return_dict=False,
        )[0]
        return _unpack(out, x, rows, cols)
