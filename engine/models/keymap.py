"""Key maps between diffusers/transformers state dicts and the original (LDM / open_clip) single-file layout.

diffusers converts original → diffusers for UNets and VAEs (used when loading); it ships nothing for the other
direction, which `unet_to_original` and `vae_to_original` provide. Text encoders are mapped both ways here,
keeping every layer (SD2 and SDXL read the penultimate layer, so the last one must survive a round trip).

Text-encoder state dicts are handled in a canonical form: transformers' CLIP text-model keys without the
`text_model.` prefix (transformers ≥ 5.6 drops it from `CLIPTextModel` but keeps it in
`CLIPTextModelWithProjection`), plus `text_projection.weight` when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_RESNET_TO_ORIGINAL = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)
_OPEN_CLIP_NAMES = (
    ("embeddings.token_embedding.weight", "token_embedding.weight"),
    ("embeddings.position_embedding.weight", "positional_embedding"),
    ("final_layer_norm.", "ln_final."),
)
_OPEN_CLIP_LAYER_NAMES = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)
_QKV = ("q_proj", "k_proj", "v_proj")


def _unet_prefix_map(config: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, original prefix, is a resnet) for every block of a UNet with `config`."""
    layers = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    pairs: list[tuple[str, str, bool]] = [
        ("time_embedding.linear_1.", "time_embed.0.", False),
        ("time_embedding.linear_2.", "time_embed.2.", False),
        ("add_embedding.linear_1.", "label_emb.0.0.", False),
        ("add_embedding.linear_2.", "label_emb.0.2.", False),
        ("class_embedding.linear_1.", "label_emb.0.0.", False),
        ("class_embedding.linear_2.", "label_emb.0.2.", False),
        ("conv_in.", "input_blocks.0.0.", False),
        ("conv_norm_out.", "out.0.", False),
        ("conv_out.", "out.2.", False),
        ("mid_block.resnets.0.", "middle_block.0.", True),
        ("mid_block.attentions.0.", "middle_block.1.", False),
        ("mid_block.resnets.1.", "middle_block.2.", True),
    ]
    for level in range(levels):
        for j in range(layers):
            block = 1 + level * (layers + 1) + j
            pairs.append((f"down_blocks.{level}.resnets.{j}.", f"input_blocks.{block}.0.", True))
            pairs.append((f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{block}.1.", False))
        down = (level + 1) * (layers + 1)
        pairs.append((f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{down}.0.op.", False))
        up_has_attention = config["up_block_types"][level].startswith("CrossAttn")
        for j in range(layers + 1):
            block = level * (layers + 1) + j
            pairs.append((f"up_blocks.{level}.resnets.{j}.", f"output_blocks.{block}.0.", True))
            pairs.append((f"up_blocks.{level}.attentions.{j}.", f"output_blocks.{block}.1.", False))
        last = level * (layers + 1) + layers
        upsampler = f"output_blocks.{last}.{2 if up_has_attention else 1}.conv."
        pairs.append((f"up_blocks.{level}.upsamplers.0.conv.", upsampler, False))
    return pairs


def unet_to_original(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers UNet state dict in the original layout (keys without `model.diffusion_model.`)."""
    pairs = sorted(_unet_prefix_map(config), key=lambda p: -len(p[0]))
    out = {}
    for key, value in state.items():
        for new, old, is_resnet in pairs:
            if key.startswith(new):
                rest = key[len(new) :]
                if is_resnet:
                    rest = _rename(rest, _RESNET_TO_ORIGINAL)
                out[old + rest] = value
                break
        else:
            raise KeyError(f"UNet key {key!r} has no original-layout name")
    return out


def vae_to_original(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict in the original layout (keys without `first_stage_model.`)."""
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out.", "norm_out.")
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(
            r"^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.",
            lambda m: (
                f"decoder.up.{levels - 1 - int(m.group(1))}."
                + ("block." if m.group(2) == "resnets" else "upsample.")
            ),
            new,
        )
        new = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m.group(1)) + 1}.", new)
        new = new.replace("conv_shortcut.", "nin_shortcut.")
        if ".mid_block.attentions.0." in new:
            new = new.replace(".mid_block.attentions.0.", ".mid.attn_1.")
            new = _rename(
                new,
                (
                    ("group_norm.", "norm."),
                    ("to_q.", "q."),
                    ("to_k.", "k."),
                    ("to_v.", "v."),
                    ("to_out.0.", "proj_out."),
                ),
            )
            if value.ndim == 2:  # the original VAE's attention projections are 1×1 convolutions
                value = value[:, :, None, None]
        out[new] = value
    return out


def _rename(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for old, new in pairs:
        key = key.replace(old, new)
    return key


def canonical_text_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model's weights in canonical form (no `text_model.`, no position ids)."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.removeprefix("text_model.")
        if key != "embeddings.position_ids":
            out[key] = value
    return out


def text_state_for_model(canonical: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, Any]:
    """Canonical text-encoder weights renamed to the keys `model.load_state_dict` expects."""
    wanted = set(model.state_dict())
    out = {}
    for key, value in canonical.items():
        if key in wanted:
            out[key] = value
        elif "text_model." + key in wanted:
            out["text_model." + key] = value
    return out


def text_from_original(
    state: Mapping[str, torch.Tensor], prefix: str, layout: str
) -> dict[str, torch.Tensor]:
    """Canonical text-encoder weights from an original-layout state dict's keys under `prefix`."""
    sub = {k[len(prefix) :]: state[k] for k in state if k.startswith(prefix)}  # by key: `state` may be lazy
    if layout == "hf":
        return {k.removeprefix("text_model."): v for k, v in sub.items() if not k.endswith("position_ids")}
    out: dict[str, torch.Tensor] = {}
    for key, value in sub.items():
        m = re.match(r"transformer\.resblocks\.(\d+)\.(.+)$", key)
        if m is None:
            if key == "text_projection":
                out["text_projection.weight"] = value.T.contiguous()
            else:
                out[_rename(key, tuple((b, a) for a, b in _OPEN_CLIP_NAMES))] = value
            continue
        layer, rest = f"encoder.layers.{m.group(1)}.", m.group(2)
        if rest.startswith("attn.in_proj_"):
            kind = rest.removeprefix("attn.in_proj_")
            for name, part in zip(_QKV, value.chunk(3, dim=0), strict=True):
                out[f"{layer}self_attn.{name}.{kind}"] = part.clone()  # no storage shared between q, k, v
        else:
            out[layer + _rename(rest, tuple((b, a) for a, b in _OPEN_CLIP_LAYER_NAMES))] = value
    return out


def text_to_original(
    canonical: Mapping[str, torch.Tensor], prefix: str, layout: str
) -> dict[str, torch.Tensor]:
    """Canonical text-encoder weights in the original layout under `prefix`."""
    if layout == "hf":
        return {
            prefix + (k if k.startswith("text_projection") else "text_model." + k): v
            for k, v in canonical.items()
        }
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, value in canonical.items():
        m = re.match(r"encoder\.layers\.(\d+)\.(.+)$", key)
        if m is None:
            if key == "text_projection.weight":
                out[prefix + "text_projection"] = value.T.contiguous()
            else:
                out[prefix + _rename(key, _OPEN_CLIP_NAMES)] = value
            continue
        layer, rest = f"{prefix}transformer.resblocks.{m.group(1)}.", m.group(2)
        qkv = re.match(r"self_attn\.(q|k|v)_proj\.(weight|bias)$", rest)
        if qkv is None:
            out[layer + _rename(rest, _OPEN_CLIP_LAYER_NAMES)] = value
        elif qkv.group(1) == "q":
            kind = qkv.group(2)
            parts = [canonical[f"encoder.layers.{m.group(1)}.self_attn.{n}.{kind}"] for n in _QKV]
            out[f"{layer}attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
    return out
