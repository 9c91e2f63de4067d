"""BaseModel counterparts for the flow-matching transformers: SD3 (MMDiT), Flux.1, Z-Image and Chroma
(their common base and the call the Flux families share: `engine.diffusion.flow_base`)."""

from __future__ import annotations

from typing import Any

from engine.diffusion.controlnet_flow import slice_control
from engine.diffusion.dit_patches import dit_patches
from engine.diffusion.flow_base import FlowTransformer, FluxFamily
from engine.diffusion.flow_tokens import flux_ids, pack, pad_to_patches, unpack


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


class Flux(FluxFamily):
    """Flux.1 (diffusers' FluxTransformer2DModel): 2×2 patches packed into tokens with (0, row, column)
    position ids; the timestep is sigma (the model scales it by 1000) and dev embeds the guidance.
    Reference latents (Flux Kontext, `engine.diffusion.flux_references`) are extra image tokens."""

    NAME = "Flux.1"
    takes_control = True

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        """As every flow transformer's, plus each entry's reference latents (model-scaled) and method."""
        out = super().added_conditions(entries, crop, batch)
        out["references"] = [
            (
                tuple(
                    self.process_latent_in(r.to(crop.device).float())
                    for r in entry.get("reference_latents") or ()
                ),
                entry.get("reference_latents_method") or "offset",
            )
            for entry in entries
        ]
        out["rows_per_entry"] = batch
        from engine.diffusion.flux_references import concat_channels

        concat = concat_channels(self, entries, crop, batch)
        if concat is not None:
            out["concat"] = concat
        from engine.diffusion.flux_masks import entry_masks

        mask = entry_masks(entries, crop, batch)
        if mask is not None:
            out["attention_mask"] = mask
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
        """One model call per group of entries sharing references (their token sequences differ in
        length otherwise), each inside the DIFFUSION_MODEL wrappers with the arguments ComfyUI's Flux
        gets: the concat channels already joined to the latent, the references as `ref_latents`."""
        import torch

        from engine.diffusion.flux_references import signature

        references = extra.get("references") or [((), "offset")]
        step = extra.get("rows_per_entry", x.shape[0])
        groups = [(slice(None), references[0])]
        if len({signature(r) for r in references}) > 1:
            groups = [(slice(i * step, (i + 1) * step), refs) for i, refs in enumerate(references)]
        concat = extra.get("concat")
        outputs = []
        for rows, (refs, method) in groups:
            x_in = x[rows] if concat is None else torch.cat([x[rows], concat[rows].to(x.dtype)], dim=1)
            pooled, guidance = extra["pooled"][rows].to(x.dtype), extra["guidance"][rows]
            args = (
                x_in,
                timestep[rows],
                context[rows],
                pooled,
                guidance,
                list(refs) or None,
                control if len(groups) == 1 else slice_control(control, rows),
                options,
            )
            # ComfyUI passes the method only beside reference latents.
            kwargs: dict[str, Any] = {"ref_latents_method": method} if refs else {}
            if extra.get("attention_mask") is not None:  # ComfyUI's Flux takes it as a keyword too
                kwargs["attention_mask"] = extra["attention_mask"][rows]
            outputs.append(self.through_wrappers(self.flux_forward, options, *args, **kwargs))
        return torch.cat(outputs)

    def _flux_call(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        y: Any,
        guidance: Any,
        ref_latents: Any,
        options: dict[str, Any],
        ref_latents_method: str = "offset",
        **kwargs: Any,
    ) -> Any:
        """Flux.1's call: the latent carries any concat channels, `y` is the pooled CLIP vector, the
        reference latents are Kontext's (placed by `ref_latents_method`), and an `attention_mask`
        keyword (engine.diffusion.flux_masks) and the "post_input" patches apply."""
        refs = (tuple(ref_latents or ()), ref_latents_method)
        post_input = options.get("patches", {}).get("post_input", [])
        mask = kwargs.get("attention_mask")
        return self._transformer(x, timestep, context, y, guidance, refs, (post_input, mask))

    def _transformer(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        y: Any,
        guidance: Any,
        refs: tuple[tuple[Any, ...], str],
        patches: tuple[list[Any], Any],
    ) -> Any:
        """`patches`: the "post_input" patches and the attention mask (or None)."""
        import torch

        from engine.diffusion.flux_masks import call_patches
        from engine.diffusion.flux_references import guidance_switched_off, reference_tokens

        tokens, rows, cols = pack(x)
        img_ids = flux_ids(rows, cols, x)
        image_tokens = tokens.shape[1]
        references, method = refs
        if references:
            ref_tokens, ref_ids = reference_tokens(list(references), method, rows, cols, x.shape[0], pack, x)
            tokens, img_ids = torch.cat([tokens, ref_tokens], dim=1), torch.cat([img_ids, ref_ids])
        txt_ids = torch.zeros((context.shape[1], 3), device=x.device, dtype=x.dtype)
        disabled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if self.diffusion_model.config.guidance_embeds:
            disabled = guidance.isnan()
            guidance = guidance.nan_to_num(0.0).to(x.dtype)
        else:
            guidance = None
        post_input, mask = patches
        lengths = (context.shape[1], tokens.shape[1])
        patched = call_patches(self.diffusion_model, post_input, mask, img_ids, lengths)
        with guidance_switched_off(self.diffusion_model, disabled), patched:
            out = self.diffusion_model(
                hidden_states=tokens,
                encoder_hidden_states=context,
                pooled_projections=y,
                timestep=timestep.to(x.dtype),
                img_ids=img_ids,
                txt_ids=txt_ids,
                guidance=guidance,
                return_dict=False,
            )[0]
        channels = int(self.diffusion_model.out_channels) // 4
        return unpack(out[:, :image_tokens], x[:, :channels], rows, cols)


class _UnpooledFlow(FlowTransformer):
    """A flow transformer conditioned on a text sequence without a pooled vector."""

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        """Nothing beside the text (Z-Image); Chroma adds its guidance and Qwen-Image its reference
        latents, which the others ignore, as ComfyUI 0.3.64's Chroma does."""
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

    def context_width(self) -> int:
        raise NotImplementedError


# The CLIPLoader type whose text encoder each family takes (for messages).
CLIP_TYPE_OF = {
    "zimage": "lumina2",
    "qwen_image": "qwen_image",
    "qwen_image21": "qwen_image",
    "flux3": "flux3",
    "chroma": "chroma",
    "chroma_radiance": "chroma",
}


class NextDiT(_UnpooledFlow):
    """What Lumina 2 and Z-Image share: ComfyUI's NextDiT call, inside the DIFFUSION_MODEL wrappers as that
    forward runs them (0.3.64's for Lumina 2; newer ComfyUI's for Z-Image too), with its arguments."""

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        args = (x, timestep, context, context.shape[1], None)
        return self.through_wrappers(
            self.nextdit_forward, options, *args, control=control, transformer_options=options
        )

    def nextdit_forward(
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
        tokens), and transformer_options (and control, which NextDiT does not read) as keywords."""
        options = kwargs.get("transformer_options") or {}
        mask = None if attention_mask is None else attention_mask[:, :num_tokens]
        with self.patch_points(options, x):
            return self._forward(x, timesteps, context[:, :num_tokens], {"attention_mask": mask})


class ZImage(NextDiT):
    """Z-Image (diffusers' ZImageTransformer2DModel). ComfyUI samples it as AuraFlow (timestep = sigma);
    the network takes t = 1 - sigma and predicts x0 - noise, so its output is negated into the velocity."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.cap_feat_dim)

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch

        height, width = x.shape[-2:]
        padded = pad_to_patches(x, 2)
        images = list(padded.unsqueeze(2).unbind(0))  # one [C, 1, H, W] per sample
        captions = list(context.unbind(0))
        out = self.diffusion_model(images, 1.0 - timestep.to(x.dtype), captions, return_dict=False)[0]
        velocity = -torch.stack([o.squeeze(1) for o in out])
        return velocity[:, :, :height, :width]


class Chroma(_UnpooledFlow):
    """Chroma (diffusers' ChromaTransformer2DModel): Flux's packing and position ids, T5 context only, the
    timestep is sigma (the model scales it by 1000) and the distilled guidance input is the conditioning's
    `guidance` (FluxGuidance), 0 when unset, as ComfyUI's."""

    NAME = "Chroma"

    def context_width(self) -> int:
        return int(self.diffusion_model.config.joint_attention_dim)

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        import torch

        guidance = [float(entry.get("guidance") or 0.0) for entry in entries for _ in range(batch)]
        return {"guidance": torch.tensor(guidance, device=crop.device)}

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        return self.through_wrappers(
            self.chroma_forward, options, x, timestep, context, extra["guidance"], control, options
        )

    def chroma_forward(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        guidance: Any = None,
        control: Any = None,
        transformer_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The prediction, called as ComfyUI calls its Chroma model (what a DIFFUSION_MODEL wrapper
        continues with): the guidance per row goes to the approximator. Loom's Chroma takes no control
        residuals."""
        del kwargs
        if control is not None:
            raise ValueError(f"Loom's {self.NAME} model takes no control residuals")
        options = transformer_options or {}
        with dit_patches(self.diffusion_model, self.family, options):
            return self._forward(x, timestep, context, self._call_extra(guidance, options))

    def _call_extra(self, guidance: Any, options: dict[str, Any]) -> dict[str, Any]:
        """What `_forward` takes beside latent, timestep and text."""
        return {"guidance": guidance}

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch

        from engine.models.chroma import distilled_guidance

        tokens, rows, cols = pack(x)
        txt_ids = torch.zeros((context.shape[1], 3), device=x.device, dtype=x.dtype)
        with distilled_guidance(self.diffusion_model, extra.get("guidance")):
            out = self.diffusion_model(
                hidden_states=tokens,
                encoder_hidden_states=context,
                timestep=timestep.to(x.dtype),
                img_ids=flux_ids(rows, cols, x),
                txt_ids=txt_ids,
                return_dict=False,
            )[0]
        return unpack(out, x, rows, cols)
