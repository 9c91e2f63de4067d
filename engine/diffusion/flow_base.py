"""The base of Loom's flow-matching transformer MODELs (`engine.diffusion.flow_models` and the
`flow_*` modules: SD3, Flux.1, Flux.2, Flux 3, Chroma, Z-Image, Qwen-Image…), and what the Flux families
share.

`apply_model(x, sigma, c_crossattn=..., added_cond_kwargs={"pooled": ..., "guidance": ...})` returns the
denoised prediction as ComfyUI's do. The sampler's conditioning dicts carry `pooled_output` and, for
Flux dev, `guidance` (FluxGuidance / CLIPTextEncodeFlux); `added_conditions` batches them per entry.
Weights may be stored in fp8 (UNETLoader's weight_dtype) while the computation runs in `compute_dtype`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.diffusion.controlnet_flow import control_residuals
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
        flux_type = family in ("flux", "flux2", "chroma", "chroma_radiance", "qwen_image", "qwen_image21")
        self.model_type = ModelType.FLUX if flux_type else ModelType.FLOW
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
        for entry in entries:
            vector = entry.get("pooled_output")
            if vector is None:
                vector = torch.zeros((1, width))
            pooled.append(vector.to(crop.device).float().expand(batch, -1))
        return {"pooled": torch.cat(pooled), "guidance": entry_guidance(entries, batch, crop.device)}

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
        self._check_conditioning(c_crossattn, extra.get("pooled"))
        context = c_crossattn.to(self.compute_dtype)
        options = transformer_options if transformer_options is not None else {}
        output = self._network(x_in.to(self.compute_dtype), timestep, context, extra, control, options)
        return sampling.calculate_denoised(sigma, output.float(), x)

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        """The transformer's prediction. Families whose ComfyUI model runs DIFFUSION_MODEL wrappers
        around its forward (Flux, Chroma, Lumina 2, Z-Image, Qwen-Image, HiDream) override this to do the
        same, with that forward's arguments; ComfyUI 0.3.64's SD3 runs none.
        ControlNet residuals (SD3, Qwen-Image) join the image tokens after each block."""
        with self.patch_points(options, x, control):
            return self._forward(x, timestep, context, extra)

    @contextmanager
    def patch_points(self, options: dict[str, Any], x: Any, control: Any = None) -> Iterator[None]:
        """For one model call: the "dit" block replacements of `options` and the ControlNet residuals."""
        with (
            dit_patches(self.diffusion_model, self.family, options, x),
            control_residuals(self.diffusion_model, self.family, control),
        ):
            yield

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


def entry_guidance(entries: list[dict[str, Any]], batch: int, device: Any) -> Any:
    """Each entry's distilled guidance (FluxGuidance; 3.5 when unset) repeated over its `batch` rows.
    None (FluxDisableGuidance) travels as NaN: the model then leaves its guidance embedding out."""
    import torch

    guidance: list[float] = []
    for entry in entries:
        value = entry.get("guidance", FLUX_DEFAULT_GUIDANCE)
        guidance += [math.nan if value is None else float(value)] * batch
    return torch.tensor(guidance, device=device)


class FluxFamily(FlowTransformer):
    """What Flux.1, Flux.2 and Flux 3 share: ComfyUI's Flux call (`flux_forward`, what a DIFFUSION_MODEL
    wrapper continues with) and the patch points it opens around diffusers' transformer, by family
    ("dit" block replacements: engine.diffusion.dit_patches; ControlNet residuals: controlnet_flow). What
    differs is each family's `_flux_call`: its tokens, position ids, references and guidance."""

    NAME = "Flux"
    takes_control = False  # only Flux.1 has ControlNets

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        refs = extra.get("ref_latents") or None
        guidance = extra.get("guidance")
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
        """The prediction, called as ComfyUI calls its Flux models: the latent, sigma, the text context,
        the pooled vector `y` (Flux.1), the guidance per row (NaN: FluxDisableGuidance), the reference
        latents, ControlNet residuals (Flux.1: "input" after double blocks, "output" after single ones)
        and transformer_options; other keywords go to the family's call."""
        if control is not None and not self.takes_control:
            raise ValueError(f"Loom's {self.NAME} model takes no control residuals")
        options = transformer_options or {}
        with self.patch_points(options, x, control):
            return self._flux_call(x, timestep, context, y, guidance, ref_latents, options, **kwargs)

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
        raise NotImplementedError
