"""ComfyUI's comfy.model_detection: a model's family config from its state dict, answered by Loom's
own detection (engine.models.detect for the UNet families, engine.models.flow_families for the flow
transformers).

`detect_unet_config` returns ComfyUI's unet_config keys for a UNet under `key_prefix` (the keys ComfyUI
0.3.64 returns for the same file: `model_channels`, `transformer_depth`, `transformer_depth_output`,
`context_dim`, ...), or the flow transformer's config with ComfyUI's `image_model` key; None when Loom
recognises no family. `model_config_from_unet_config` walks `comfy.supported_models.models` in order,
read at call time, so a pack that swaps that list (as Easy-Use's Kolors loader does) is honoured.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from engine.diffusion.diffusion_model import comfy_unet_config
from engine.diffusion.model_configs import BASE, flow_unet_config
from engine.models.detect import UNET_PREFIX, detect_model
from engine.models.errors import UnsupportedModelError

__all__ = [
    "convert_config",
    "count_blocks",
    "detect_unet_config",
    "model_config_from_diffusers_unet",
    "model_config_from_unet",
    "model_config_from_unet_config",
    "unet_config_from_diffusers_unet",
    "unet_prefix_from_state_dict",
]

# The keys ComfyUI's detection returns for a UNet (Loom's model configs carry diffusers' keys as well).
_UNET_KEYS = (
    "use_checkpoint", "image_size", "use_spatial_transformer", "legacy", "adm_in_channels", "in_channels",
    "out_channels", "model_channels", "num_res_blocks", "transformer_depth", "transformer_depth_output",
    "channel_mult", "transformer_depth_middle", "use_linear_in_transformer", "context_dim",
    "use_temporal_resblock", "use_temporal_attention",
)  # fmt: skip


def count_blocks(state_dict_keys: Iterable[str], prefix_string: str) -> int:
    """How many consecutive indices n have a key starting with `prefix_string.format(n)`."""
    keys = list(state_dict_keys)
    count = 0
    while any(key.startswith(prefix_string.format(count)) for key in keys):
        count += 1
    return count


def _shapes(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(getattr(value, "shape", ())) for key, value in state_dict.items()}


def detect_unet_config(
    state_dict: Mapping[str, Any], key_prefix: str, metadata: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """ComfyUI's unet_config of the diffusion model under `key_prefix`, or None if Loom finds none."""
    from engine.models import flow_families

    shapes = _shapes(state_dict)
    flow = flow_families.detect(shapes)
    if flow is not None:
        return flow_unet_config(flow.family, _flow_config(flow.family, shapes, flow.prefix))
    # The UNet's keys where Loom's detection reads them; the rest (text encoders) tell the family.
    unet = {UNET_PREFIX + k[len(key_prefix) :]: v for k, v in shapes.items() if k.startswith(key_prefix)}
    others = {k: v for k, v in shapes.items() if not k.startswith(key_prefix)}
    try:
        spec = detect_model({**others, **unet}, dict(metadata or {}))
    except UnsupportedModelError:
        return None
    full = comfy_unet_config(spec.unet_config)
    return {key: full[key] for key in _UNET_KEYS}


def _flow_config(family: str, shapes: Mapping[str, tuple[int, ...]], prefix: str) -> dict[str, Any]:
    import importlib

    module = importlib.import_module(f"engine.models.{family}")
    return dict(module.transformer_config(shapes, prefix))


def model_config_from_unet_config(
    unet_config: dict[str, Any], state_dict: Mapping[str, Any] | None = None
) -> Any:
    """An instance of the first config of `comfy.supported_models.models` matching, else None."""
    from comfy import supported_models

    for config in supported_models.models:
        if config.matches(unet_config, state_dict):
            return config(unet_config)
    logging.error("no match %s", unet_config)
    return None


def model_config_from_unet(
    state_dict: Mapping[str, Any],
    unet_key_prefix: str,
    use_base_if_no_match: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> Any:
    unet_config = detect_unet_config(state_dict, unet_key_prefix, metadata)
    if unet_config is None:
        return None
    config = model_config_from_unet_config(unet_config, state_dict)
    if config is None and use_base_if_no_match:
        config = BASE(unet_config)
    return config


def unet_prefix_from_state_dict(state_dict: Mapping[str, Any]) -> str:
    """Where the diffusion model's keys start: the most used of ComfyUI's known prefixes (more than five
    keys), else `model.`."""
    counts = dict.fromkeys(("model.diffusion_model.", "model.model.", "net."), 0)
    for key in state_dict:
        for prefix in counts:
            if key.startswith(prefix):
                counts[prefix] += 1
                break
    best = max(counts, key=lambda prefix: counts[prefix])
    return best if counts[best] > 5 else "model."


def convert_config(unet_config: dict[str, Any]) -> dict[str, Any]:
    """An LDM yaml-style config (int `num_res_blocks`, `attention_resolutions`) in ComfyUI's per-block
    form."""
    config = dict(unet_config)
    mult = config.get("channel_mult")
    blocks = config.get("num_res_blocks")
    if isinstance(blocks, int):
        blocks = [blocks] * len(mult or [])
    if "attention_resolutions" in config:
        resolutions = config.pop("attention_resolutions")
        depth: Any = config.get("transformer_depth")
        if isinstance(depth, int):
            depth = [depth] * len(mult or [])
        middle = config.get("transformer_depth_middle")
        down: list[int] = []
        up: list[int] = []
        for level, count in enumerate(blocks or []):
            # Level n works at 2**n times the latent's downscale; attention where that is listed.
            value = depth[level] if 2**level in resolutions else 0
            down += [value] * count
            up += [value] * (count + 1)
        config["transformer_depth"] = down
        config["transformer_depth_output"] = up
        config["transformer_depth_middle"] = depth[-1] if middle is None else middle
    config["num_res_blocks"] = blocks
    return config


def unet_config_from_diffusers_unet(
    state_dict: Mapping[str, Any], dtype: Any = None
) -> dict[str, Any] | None:
    """ComfyUI's unet_config of a diffusers-layout UNet state dict (`conv_in.weight`, `down_blocks.…`),
    read from its shapes; None when it is not one."""
    if "conv_in.weight" not in state_dict:
        return None
    keys = list(state_dict)
    levels = count_blocks(keys, "down_blocks.{}.")
    widths = [int(state_dict[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(levels)]
    per_level = count_blocks(keys, "down_blocks.0.resnets.{}.")
    depths, context, linear = [], None, False
    for level in range(levels):
        block = f"down_blocks.{level}.attentions.0."
        depth = count_blocks(keys, block + "transformer_blocks.{}.")
        depths.append(depth)
        if depth:
            context = int(state_dict[block + "transformer_blocks.0.attn2.to_k.weight"].shape[1])
            linear = len(state_dict[block + "proj_in.weight"].shape) == 2
    embedding = ("class_embedding.linear_1.weight", "add_embedding.linear_1.weight")
    adm = next((int(state_dict[k].shape[1]) for k in embedding if k in state_dict), None)
    diffusers = {
        "in_channels": int(state_dict["conv_in.weight"].shape[1]),
        "out_channels": int(state_dict["conv_out.weight"].shape[0]),
        "block_out_channels": widths,
        "layers_per_block": per_level,
        "transformer_layers_per_block": [max(d, 1) for d in depths],
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "cross_attention_dim": context,
        "use_linear_projection": linear,
        "projection_class_embeddings_input_dim": adm,
    }
    full = comfy_unet_config(diffusers)
    full["transformer_depth_middle"] = (
        count_blocks(keys, "mid_block.attentions.0.transformer_blocks.{}.") or -1
    )
    out = {key: full[key] for key in _UNET_KEYS}
    if dtype is not None:
        out["dtype"] = dtype
    return out


def model_config_from_diffusers_unet(state_dict: Mapping[str, Any]) -> Any:
    unet_config = unet_config_from_diffusers_unet(state_dict)
    return model_config_from_unet_config(unet_config) if unet_config is not None else None
