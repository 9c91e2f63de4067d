"""Qwen-Image's BaseModel counterpart (diffusers' QwenImageTransformer2DModel), with Qwen-Image Edit's
reference latents and Qwen-Image Layered's frames."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from engine.diffusion.batching import reference_shapes, stacked_references
from engine.diffusion.flow_models import _UnpooledFlow


class QwenImage(_UnpooledFlow):
    """Qwen-Image (diffusers' QwenImageTransformer2DModel): 2×2 patches packed into tokens, the image's
    shape given for its centred rotary positions; the timestep is sigma (scaled by 1000 inside).

    Qwen-Image Edit: the conditioning's `reference_latents` (TextEncodeQwenImageEdit with a VAE) are
    normalised as the latent is, packed the same way and appended to the image tokens, the n-th at rotary
    frame index n (ComfyUI's and diffusers' "index" placement); only the generated image's tokens come
    back out.

    Qwen-Image Layered (`engine.diffusion.qwen_layers`): the latent may be 5-D, the image and its layers
    as frames, and references go to frame -n ("negative_index", its default as ComfyUI's)."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.joint_attention_dim)

    @property
    def takes_frames(self) -> bool:
        """Layered samples 5-D latents [B, C, frames, H, W]."""
        from engine.diffusion.qwen_layers import is_layered

        return is_layered(self.diffusion_model)

    @property
    def default_reference_method(self) -> str:
        return "negative_index" if self.takes_frames else "index"

    def condition_key(self, entry: dict[str, Any]) -> tuple[Any, ...]:
        """Entries batch together only with reference latents of the same shapes (ComfyUI's CONDList)
        and placement method."""
        return (
            *reference_shapes(entry),
            entry.get("reference_latents_method", self.default_reference_method),
        )

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        references = [entry.get("reference_latents") or [] for entry in entries]
        if not references[0]:
            return {}
        default = self.default_reference_method
        methods = {entry.get("reference_latents_method", default) for entry in entries}
        unknown = methods - {"index", "index_timestep_zero", "negative_index"}
        if unknown:
            raise ValueError(
                f"reference_latents_method {sorted(unknown)[0]!r} is not supported for Qwen-Image in Loom; "
                "reference latents are placed by index (index_timestep_zero, negative_index)"
            )
        stacked = stacked_references(entries, batch, self.process_latent_in, crop.device)
        out: dict[str, Any] = {"ref_latents": stacked}
        given = {
            entry["reference_latents_method"] for entry in entries if "reference_latents_method" in entry
        }
        if given:  # ComfyUI passes the method only where the conditioning sets it
            out["ref_latents_method"] = sorted(given)[0]
        return out

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        """Inside the DIFFUSION_MODEL wrappers, as ComfyUI 0.3.64's Qwen-Image forward runs them."""
        refs = extra.get("ref_latents") or None
        kwargs: dict[str, Any] = {"control": control}
        if "ref_latents_method" in extra:
            kwargs["ref_latents_method"] = extra["ref_latents_method"]
        return self.through_wrappers(
            self.qwen_forward, options, x, timestep, context, None, None, refs, options, **kwargs
        )

    def qwen_forward(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        attention_mask: Any = None,
        guidance: Any = None,
        ref_latents: Any = None,
        transformer_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The prediction, with the arguments of ComfyUI's Qwen-Image forward (what a DIFFUSION_MODEL wrapper
        continues with): latent, timestep (sigma), text states, their mask (None: ComfyUI drops an all-ones
        one), guidance (unused), the reference latents, transformer_options; `control` (ControlNet
        residuals) and `ref_latents_method` as keywords."""
        del attention_mask, guidance
        options = transformer_options or {}
        method = kwargs.get("ref_latents_method", self.default_reference_method)
        extra: dict[str, Any] = {
            "ref_latents": list(ref_latents or ()),
            # index_timestep_zero (Qwen-Image Edit 2511): the references are modulated as at timestep 0.
            "references_at_time_zero": method == "index_timestep_zero",
            "reference_step": -1 if method == "negative_index" else 1,
        }
        return super()._network(x, timestep, context, extra, kwargs.get("control"), options)

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch

        from engine.diffusion.qwen_layers import layer_condition, pack, reference_step, unpack

        tokens, grid = pack(x)
        shapes = [grid]
        for latent in extra.get("ref_latents", []):
            packed, ref_grid = pack(latent.to(x.dtype))
            tokens = torch.cat([tokens, packed], dim=1)
            shapes.append(ref_grid)
        transformer = self.diffusion_model
        # No mask: ComfyUI drops an all-ones mask, and its prompts are never padded.
        with (
            _zero_cond_t(transformer, extra.get("references_at_time_zero", False)),
            reference_step(transformer.pos_embed, extra.get("reference_step", 1)),
        ):
            out = transformer(
                hidden_states=tokens,
                encoder_hidden_states=context,
                timestep=timestep.to(x.dtype),
                img_shapes=[shapes] * x.shape[0],
                return_dict=False,
                **layer_condition(transformer, x.shape[0], x.device),
            )[0]
        return unpack(out[:, : grid[0] * grid[1] * grid[2]], x, grid)


@contextlib.contextmanager
def _zero_cond_t(transformer: Any, enabled: bool) -> Iterator[None]:
    """diffusers' `zero_cond_t` for one call: tokens after the first image's (the references) get the
    modulation of timestep 0, as Qwen-Image Edit 2511 (ComfyUI's index_timestep_zero) expects."""
    modules = [transformer, *transformer.transformer_blocks]
    saved = [module.zero_cond_t for module in modules]
    for module in modules:
        module.zero_cond_t = enabled
    try:
        yield
    finally:
        for module, value in zip(modules, saved, strict=True):
            module.zero_cond_t = value
