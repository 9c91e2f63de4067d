"""ControlNet Union (xinsir's SDXL ControlNet++), on diffusers' ControlNetUnionModel, run as ComfyUI runs it.

The weights load into diffusers' `ControlNetUnionModel` (same module names as the released files). Its
forward differs from ComfyUI's in what it feeds the small transformer that fuses hint and type: it adds
the latent's own mean feature as a token and, in its attention, mixes entries across the batch. Loom
follows ComfyUI (comfy/cldm/cldm.py): the type set by SetUnionControlNetType (a list of type numbers;
empty for "auto") switches on its one-hot entry in the control-type embedding added to the time
embedding; with a type, the hint's features plus the type's task embedding pass through the transformer
layers (per batch entry) and a projection of the result is added to the hint's features before they join
the first block's output; with "auto", the hint's features join it as they are.
"""

from __future__ import annotations

from typing import Any

from .errors import UnsupportedModelError


def build_union(state: dict[str, Any]) -> Any:
    """A ControlNetUnionModel from diffusers-named Union weights, with ComfyUI's forward attached."""
    import torch
    from diffusers import ControlNetUnionModel

    from .controlnet import diffusers_controlnet_config, weights_dtype

    config = diffusers_controlnet_config(state)
    task = state["task_embedding"]
    layers = len({k.split(".")[1] for k in state if k.startswith("transformer_layes.")})
    config |= {
        "num_control_type": task.shape[0],
        "num_trans_channel": task.shape[1],
        "num_trans_layer": layers,
        "num_proj_channel": state["spatial_ch_projs.weight"].shape[0],
        # ComfyUI fuses one token, over which the heads make no difference; 8 as in the released files.
        "num_trans_head": 8 if task.shape[1] % 8 == 0 else 1,
    }
    with torch.device("meta"):
        model: Any = ControlNetUnionModel(**config)
    dtype = weights_dtype()
    missing, unexpected = model.load_state_dict(
        {k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True
    )
    if missing or unexpected:
        raise ValueError(
            f"Union ControlNet weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.eval().requires_grad_(False)
    model.union_forward = lambda *args: union_forward(model, *args)
    return model


def union_forward(
    model: Any,
    x_in: Any,
    timestep: Any,
    context: Any,
    hint: Any,
    added_cond_kwargs: dict[str, Any] | None,
    control_type: list[int],
) -> tuple[list[Any], Any]:
    """The residuals for each skip connection and the middle block, as ComfyUI's union ControlNet."""
    import torch

    count = model.config.num_control_type
    if any(t >= count for t in control_type):
        raise UnsupportedModelError(
            f"control type {max(control_type)} is out of range: this Union ControlNet knows {count} types "
            "(the ProMax model knows all of SetUnionControlNetType's)"
        )
    batch = x_in.shape[0]
    dtype = x_in.dtype
    emb = model.time_embedding(model.time_proj(timestep.reshape(-1).expand(batch)).to(dtype))
    one_hot = torch.zeros(count, device=x_in.device)
    one_hot[control_type] = 1.0
    emb = emb + model.control_add_embedding(model.control_type_proj(one_hot).reshape(1, -1).to(dtype))
    guided = model.controlnet_cond_embedding(hint)
    if control_type:
        tokens = (guided.mean(dim=(2, 3)) + model.task_embedding[control_type[0]]).unsqueeze(1)
        for layer in model.transformer_layes:
            tokens = _batch_first(layer, tokens)
        guided = guided + model.spatial_ch_projs(tokens[:, 0]).unsqueeze(-1).unsqueeze(-1)
    if added_cond_kwargs is not None and model.add_embedding is not None:
        time_ids = model.add_time_proj(added_cond_kwargs["time_ids"].flatten()).reshape(batch, -1)
        extra = torch.cat([added_cond_kwargs["text_embeds"], time_ids.to(dtype)], dim=-1)
        emb = emb + model.add_embedding(extra.to(dtype))
    sample = model.conv_in(x_in) + guided
    skips = [sample]
    for block in model.down_blocks:
        if getattr(block, "has_cross_attention", False):
            sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=context)
        else:
            sample, res = block(hidden_states=sample, temb=emb)
        skips += list(res)
    sample = model.mid_block(sample, emb, encoder_hidden_states=context)
    down = [conv(skip) for skip, conv in zip(skips, model.controlnet_down_blocks, strict=True)]
    return down, model.controlnet_mid_block(sample)


def _batch_first(layer: Any, x: Any) -> Any:
    """One of the fusion transformer's layers over [batch, tokens, channels], attending within an entry."""
    h = layer.ln_1(x).transpose(0, 1)
    x = x + layer.attn(h, h, h, need_weights=False)[0].transpose(0, 1)
    return x + layer.mlp(layer.ln_2(x))
