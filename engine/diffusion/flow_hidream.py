"""HiDream's BaseModel counterpart (diffusers' HiDreamImageTransformer2DModel), for HiDream-I1 and E1.

As ComfyUI's HiDream model: the conditioning is T5's sequence (`cond`), the pooled CLIP-L + CLIP-G vector
(`pooled_output`) and Llama 3.1's hidden states after each layer (`conditioning_llama3`, [1, layers,
tokens, width]); double block i and single block 16 + i read Llama layer min(i, layers - 1). The timestep is
sigma × 1000 and the network predicts noise − x0, so its output is negated into the velocity. HiDream-E1
edits an image: InstructPixToPixConditioning's `concat_latent_image` joins the latent side by side (along
the width) and only the left half comes back out.

diffusers' forward pads a non-square latent to 128 × 128 patches with a mask; ComfyUI's does not. Loom
patchifies as ComfyUI does and hands diffusers the tokens with a mask of ones (a no-op in its attention), so
E1's side-by-side latent runs unpadded too.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.flow_models import FlowTransformer
from engine.diffusion.flow_tokens import pad_to_patches
from engine.models.hidream import LLAMA_LAYERS

PATCH = 2


class HiDream(FlowTransformer):
    """HiDream-I1 / E1 in Loom's sampler contract."""

    def condition_key(self, entry: dict[str, Any]) -> tuple[Any, ...]:
        """Entries batch only with Llama states of the same shape and the same kind of edit input."""
        llama = entry.get("conditioning_llama3")
        return (None if llama is None else tuple(llama.shape), entry.get("concat_latent_image") is not None)

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        import torch

        from engine.diffusion.model_inputs import fit_to_latent

        config = self.diffusion_model.config
        pooled, llama, images = [], [], []
        for entry in entries:
            vector = entry.get("pooled_output")
            if vector is None:
                vector = torch.zeros((1, config.text_emb_dim))
            pooled.append(vector.to(crop.device).float().expand(batch, -1))
            states = entry.get("conditioning_llama3")
            if states is None:  # ComfyUI's stand-in when the CLIP has no Llama: one zero token per layer
                states = torch.zeros((1, LLAMA_LAYERS, 1, config.caption_channels[1]))
            llama.append(states.to(crop.device).float().expand(batch, -1, -1, -1))
            image = entry.get("concat_latent_image")
            if image is not None:
                images.append(self.process_latent_in(fit_to_latent(image.float(), crop[:batch])))
        out: dict[str, Any] = {"pooled": torch.cat(pooled), "llama": torch.cat(llama)}
        if images:
            if len(images) != len(entries):
                raise ValueError("HiDream-E1: every conditioning of one sampling needs the image to edit")
            out["image_cond"] = torch.cat(images)
        return out

    def _check_conditioning(self, context: Any, pooled: Any) -> None:
        config = self.diffusion_model.config
        t5_width, _ = config.caption_channels
        if context.shape[-1] != t5_width or pooled.shape[-1] != config.text_emb_dim:
            raise ValueError(
                f"this HiDream model takes T5 conditioning {t5_width} wide with a pooled vector of "
                f"{config.text_emb_dim}, but got {context.shape[-1]} and {pooled.shape[-1]}: encode the "
                "prompt with HiDream's four text encoders (QuadrupleCLIPLoader, or CLIPLoader type hidream)"
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
        if control is not None:
            raise ValueError("Loom's HiDream model takes no ControlNet residuals")
        image_cond = extra.get("image_cond")
        return self.through_wrappers(
            self.hidream_forward,
            options,
            x,
            timestep,
            extra["pooled"].to(x.dtype),
            context,
            extra["llama"].to(x.dtype),
            None if image_cond is None else image_cond.to(x.dtype),
            None,
            options,
        )

    def hidream_forward(
        self,
        x: Any,
        t: Any,
        y: Any = None,
        context: Any = None,
        encoder_hidden_states_llama3: Any = None,
        image_cond: Any = None,
        control: Any = None,
        transformer_options: dict[str, Any] | None = None,
    ) -> Any:
        """The prediction, with the arguments ComfyUI's HiDream model takes (what a DIFFUSION_MODEL wrapper
        continues with): latent, timestep (sigma × 1000), pooled vector, T5 sequence, Llama states, E1's
        reference latent."""
        del control, transformer_options
        return forward(self.diffusion_model, x, t, y, context, encoder_hidden_states_llama3, image_cond)


def forward(
    transformer: Any, x: Any, t: Any, pooled: Any, t5: Any, llama: Any, image_cond: Any = None
) -> Any:
    """diffusers' HiDream transformer on ComfyUI's inputs; returns the velocity at x's size."""
    import torch

    height, width = x.shape[-2:]
    if image_cond is not None:
        x = torch.cat([x, image_cond], dim=-1)
    padded = pad_to_patches(x, PATCH)
    batch, channels, full_h, full_w = padded.shape
    rows, cols = full_h // PATCH, full_w // PATCH
    tokens = padded.reshape(batch, channels, rows, PATCH, cols, PATCH).permute(0, 2, 4, 3, 5, 1)
    tokens = tokens.reshape(batch, rows * cols, PATCH * PATCH * channels)
    ids = torch.zeros(rows, cols, 3, device=x.device)
    ids[..., 1] += torch.arange(rows, device=x.device)[:, None]
    ids[..., 2] += torch.arange(cols, device=x.device)[None, :]
    ids = ids.reshape(1, rows * cols, 3).expand(batch, -1, -1)
    blocks = transformer.config.num_layers + transformer.config.num_single_layers
    depth = llama.shape[1]
    per_block = [llama[:, min(i, depth - 1)] for i in range(blocks)]
    mask = torch.ones((batch, rows * cols), device=x.device, dtype=tokens.dtype)
    out = transformer(
        hidden_states=tokens,
        timesteps=t.reshape(-1).expand(batch),
        encoder_hidden_states_t5=t5,
        encoder_hidden_states_llama3=per_block,
        pooled_embeds=pooled,
        img_ids=ids,
        img_sizes=[(rows, cols)] * batch,
        hidden_states_masks=mask,
        return_dict=False,
    )[0]
    return -out[:, :, :height, :width]
