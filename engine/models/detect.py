"""Which Stable Diffusion family a state dict holds, and its architecture, inferred from key names and shapes.

Works on shapes alone (so a .safetensors header is enough), and infers widths, levels and depths rather than
matching full-size models, so small models in a real layout are understood too. Hyper-parameters that no
shape reveals (attention heads, GroupNorm groups) come from the file's `loom.arch` metadata when present,
else from the family's convention (SD1: 8 heads; SD2/SDXL/CLIP: 64 channels a head; 32 groups).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import UnsupportedModelError

Family = Literal["sd1", "sd2", "sdxl", "sdxl_refiner"]
PredictionType = Literal["eps", "v_prediction"]
Layout = Literal["hf", "open_clip"]
Shapes = Mapping[str, tuple[int, ...]]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
ARCH_METADATA_KEY = "loom.arch"
VAE_SCALING = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025, "sdxl_refiner": 0.13025}
# Text-encoder prefixes of each family, in the order the family's pipeline uses them.
TEXT_PREFIXES: dict[Family, tuple[tuple[str, Layout], ...]] = {
    "sd1": (("cond_stage_model.transformer.", "hf"),),
    "sd2": (("cond_stage_model.model.", "open_clip"),),
    "sdxl": (("conditioner.embedders.0.transformer.", "hf"), ("conditioner.embedders.1.model.", "open_clip")),
    "sdxl_refiner": (("conditioner.embedders.0.model.", "open_clip"),),
}
_V_PRED_PROBE = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder inside a checkpoint: where its keys are and the transformers config to build."""

    prefix: str
    layout: Layout
    config: dict[str, Any]
    with_projection: bool
    pad_id: int


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build diffusers/transformers models for a checkpoint's weights."""

    family: Family
    prediction_type: PredictionType
    unet_config: dict[str, Any]
    vae_config: dict[str, Any] | None
    text_encoders: tuple[TextEncoderSpec, ...]


def detect_model(
    shapes: Shapes,
    metadata: Mapping[str, str] | None = None,
    get_tensor: Callable[[str], Any] | None = None,
) -> ModelSpec:
    """Detect the family and architecture of a checkpoint from its tensor shapes.

    `get_tensor(key)` is used only for ComfyUI's SD2 v-prediction heuristic when neither a `v_pred` key nor
    prediction-type metadata decides it. Raises `UnsupportedModelError` naming what was found instead.
    """
    metadata = metadata or {}
    if not any(k.startswith(UNET_PREFIX) for k in shapes):
        raise UnsupportedModelError(f"no UNet keys ({UNET_PREFIX}*) found; {describe_keys(shapes)}")
    arch = _arch_hints(metadata)
    family = _family(shapes, metadata.get("loom.family"))
    text_encoders = tuple(
        _text_encoder_spec(shapes, prefix, layout, family, index, arch)
        for index, (prefix, layout) in enumerate(TEXT_PREFIXES[family])
        if any(k.startswith(prefix) for k in shapes)
    )
    prediction = _prediction_type(shapes, metadata, family, get_tensor)
    pooled_dim = next((te.config["projection_dim"] for te in text_encoders if te.with_projection), None)
    unet = unet_config_from_shapes(shapes, family, prediction, arch, pooled_dim)
    vae = (
        vae_config_from_shapes(shapes, family, arch)
        if f"{VAE_PREFIX}decoder.conv_in.weight" in shapes
        else None
    )
    return ModelSpec(family, prediction, unet, vae, text_encoders)


def describe_keys(shapes: Shapes) -> str:
    """A short human description of what a non-checkpoint state dict seems to be."""
    keys = list(shapes)
    if not keys:
        return "the file holds no tensors"
    sample = ", ".join(keys[:4])
    guess = ""
    if any("lora_" in k or ".lora." in k or "lora_down" in k or k.endswith(".alpha") for k in keys):
        guess = "; this looks like a LoRA (load it with a LoRA loader, not as a checkpoint)"
    elif any(k in ("emb_params", "string_to_param", "clip_l", "clip_g") for k in keys):
        guess = "; this looks like a textual-inversion embedding"
    elif any(k.startswith(("encoder.down", "decoder.up", VAE_PREFIX)) for k in keys):
        guess = "; this looks like a VAE on its own"
    elif any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        guess = "; this looks like a diffusers-format model (load its folder instead)"
    elif any("text_model." in k or "resblocks." in k for k in keys):
        guess = "; this looks like a text encoder on its own"
    return f"found {len(keys)} keys like {sample}{guess}"


def _family(shapes: Shapes, written_as: str | None = None) -> Family:
    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in shapes)

    if has("conditioner.embedders.1.model.") or has("conditioner.embedders.0.transformer."):
        return "sdxl"
    if has("conditioner.embedders.0.model."):
        return "sdxl_refiner"
    if has("cond_stage_model.model."):
        return "sd2"
    if has("cond_stage_model.transformer."):
        return "sd1"
    # A UNet with no text encoder: the family Loom recorded when it wrote the file (ModelSave), else the
    # full-size models' context and ADM widths.
    if written_as in ("sd1", "sd2", "sdxl", "sdxl_refiner"):
        return written_as  # type: ignore[return-value]
    adm = shapes.get(UNET_PREFIX + "label_emb.0.0.weight")
    context = _context_dim(shapes)
    if adm is not None and adm[1] in (2816, 2560):
        return "sdxl" if adm[1] == 2816 else "sdxl_refiner"
    if adm is not None and adm[1] == 4:
        raise UnsupportedModelError(
            "a Lotus-D depth/normal UNet (a class embedding of 4 inputs): load it with UNETLoader "
            "(Load Diffusion Model) from models/diffusion_models"
        )
    if adm is None and context in (768, 1024):
        return "sd1" if context == 768 else "sd2"
    what = f"adm width {adm[1]}" if adm is not None else f"context width {context}"
    raise UnsupportedModelError(
        f"a UNet with no text encoder and {what} matches no supported family (SD1.x, SD2.x, SDXL); "
        f"{describe_keys(shapes)}"
    )


def _prediction_type(
    shapes: Shapes, metadata: Mapping[str, str], family: Family, get_tensor: Callable[[str], Any] | None
) -> PredictionType:
    if "v_pred" in shapes:
        return "v_prediction"
    for key in ("modelspec.prediction_type", "prediction_type"):
        value = metadata.get(key, "").strip().lower().replace("-", "_")
        if value in ("v", "v_prediction", "vpred", "v_pred"):
            return "v_prediction"
        if value in ("eps", "epsilon"):
            return "eps"
    if family == "sd2" and get_tensor is not None and _V_PRED_PROBE in shapes:
        return "v_prediction" if float(get_tensor(_V_PRED_PROBE).float().std()) > 0.09 else "eps"
    return "eps"


def _arch_hints(metadata: Mapping[str, str]) -> dict[str, Any]:
    raw = metadata.get(ARCH_METADATA_KEY)
    if not raw:
        return {}
    try:
        hints = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UnsupportedModelError(
            f"metadata {ARCH_METADATA_KEY!r} is not valid JSON: {raw[:80]!r}"
        ) from exc
    return hints if isinstance(hints, dict) else {}


def _indices(shapes: Shapes, prefix: str) -> list[int]:
    """Sorted distinct integers N of keys starting with `prefix` + "N."."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in shapes if (m := pattern.match(k))})


def _context_dim(shapes: Shapes) -> int | None:
    for key, shape in shapes.items():
        if key.startswith(UNET_PREFIX) and key.endswith("attn2.to_k.weight"):
            return shape[1]
    return None


def _heads(channels: int, per_head: int | None, fixed: int | None, what: str) -> int:
    heads = fixed if fixed is not None else (channels // per_head if per_head else 0)
    if heads <= 0 or channels % heads:
        raise UnsupportedModelError(
            f"cannot tell the attention heads of {what} ({channels} channels); "
            f"record them in the file's {ARCH_METADATA_KEY!r} metadata"
        )
    return heads


def unet_config_from_shapes(
    shapes: Shapes,
    family: Family,
    prediction: PredictionType,
    arch: Mapping[str, Any],
    pooled_dim: int | None = None,
) -> dict[str, Any]:
    """A diffusers `UNet2DConditionModel` config for the original-layout UNet in `shapes`."""
    p = UNET_PREFIX
    conv_in = shapes[p + "input_blocks.0.0.weight"]
    blocks = _indices(shapes, p + "input_blocks.")
    downsamplers = [i for i in blocks if p + f"input_blocks.{i}.0.op.weight" in shapes]
    layers = (downsamplers[0] if downsamplers else len(blocks)) - 1
    levels = len(downsamplers) + 1
    channels, depths, has_attn = [], [], []
    for level in range(levels):
        first = 1 + level * (layers + 1)
        channels.append(shapes[p + f"input_blocks.{first}.0.out_layers.3.weight"][0])
        depth = len(_indices(shapes, p + f"input_blocks.{first}.1.transformer_blocks."))
        has_attn.append(depth > 0)
        depths.append(depth)
    # diffusers' mid block takes the last level's depth and heads, even when that level has no attention.
    mid_depth = len(_indices(shapes, p + "middle_block.1.transformer_blocks.")) or 1
    depths[-1] = depths[-1] or mid_depth
    depths = [d or 1 for d in depths]
    proj_in = next((s for k, s in shapes.items() if k.startswith(p) and k.endswith("proj_in.weight")), None)
    heads = arch.get("unet_heads") or [
        _heads(ch, None if family == "sd1" else 64, 8 if family == "sd1" else None, f"UNet level {i}")
        if has_attn[i] or i == levels - 1
        else max(1, ch // 64)
        for i, ch in enumerate(channels)
    ]
    config: dict[str, Any] = {
        "sample_size": {"sd1": 64, "sd2": 96 if prediction == "v_prediction" else 64}.get(family, 128),
        "in_channels": conv_in[1],
        "out_channels": shapes[p + "out.2.weight"][0],
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attn)],
        "cross_attention_dim": _context_dim(shapes),
        "attention_head_dim": heads,
        "transformer_layers_per_block": depths,
        "use_linear_projection": proj_in is not None and len(proj_in) == 2,
        "norm_num_groups": int(arch.get("unet_norm_num_groups", 32)),
        "upcast_attention": family == "sd2" and prediction == "v_prediction",
    }
    time_dim = shapes[p + "time_embed.0.weight"][0]
    if time_dim != 4 * channels[0]:
        config["time_embedding_dim"] = time_dim
    adm = shapes.get(p + "label_emb.0.0.weight")
    if adm is not None and family in ("sd1", "sd2"):
        # SD2.1 unCLIP: the class embedding takes a noised CLIP image embedding and its noise level.
        config |= {"class_embed_type": "projection", "projection_class_embeddings_input_dim": adm[1]}
    elif adm is not None:
        # SDXL adds six size/crop embeddings (five for the refiner: size, crop, aesthetic score).
        extras = 5 if family == "sdxl_refiner" else 6
        time_ids_dim = (
            int(arch.get("unet_addition_time_embed_dim", 0)) or (adm[1] - (pooled_dim or 1280)) // extras
        )
        config |= {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": time_ids_dim,
            "projection_class_embeddings_input_dim": adm[1],
        }
    return config


def vae_config_from_shapes(shapes: Shapes, family: Family, arch: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers `AutoencoderKL` config for the original-layout VAE in `shapes`."""
    p = VAE_PREFIX
    levels = _indices(shapes, p + "encoder.down.")
    return {
        "in_channels": shapes[p + "encoder.conv_in.weight"][1],
        "out_channels": shapes[p + "decoder.conv_out.weight"][0],
        "latent_channels": shapes[p + "decoder.conv_in.weight"][1],
        "block_out_channels": [shapes[p + f"encoder.down.{i}.block.0.conv2.weight"][0] for i in levels],
        "layers_per_block": len(_indices(shapes, p + "encoder.down.0.block.")),
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "norm_num_groups": int(arch.get("vae_norm_num_groups", 32)),
        "mid_block_add_attention": p + "encoder.mid.attn_1.q.weight" in shapes,
        "use_quant_conv": p + "quant_conv.weight" in shapes,
        "use_post_quant_conv": p + "post_quant_conv.weight" in shapes,
        "scaling_factor": VAE_SCALING[family],
        "sample_size": 1024 if family.startswith("sdxl") else 512,
    }


def _text_encoder_spec(
    shapes: Shapes, prefix: str, layout: Layout, family: Family, index: int, arch: Mapping[str, Any]
) -> TextEncoderSpec:
    if layout == "hf":
        inner = prefix + ("text_model." if any(k.startswith(prefix + "text_model.") for k in shapes) else "")
        token = shapes[inner + "embeddings.token_embedding.weight"]
        positions = shapes[inner + "embeddings.position_embedding.weight"][0]
        layer_prefix, fc1 = inner + "encoder.layers.", "mlp.fc1.weight"
        projection = shapes.get(prefix + "text_projection.weight")
        projection_dim = projection[0] if projection else token[1]
        act = "quick_gelu"
    else:
        token = shapes[prefix + "token_embedding.weight"]
        positions = shapes[prefix + "positional_embedding"][0]
        layer_prefix, fc1 = prefix + "transformer.resblocks.", "mlp.c_fc.weight"
        projection = shapes.get(prefix + "text_projection")
        projection_dim = projection[1] if projection else token[1]
        act = "gelu"
    n_layers = len(_indices(shapes, layer_prefix))
    hidden = token[1]
    fixed = arch.get("text_heads")
    heads = _heads(hidden, 64, fixed[index] if fixed else None, f"text encoder {index}")
    pad_id = 49407 if layout == "hf" else 0
    config = {
        "vocab_size": token[0],
        "hidden_size": hidden,
        "intermediate_size": shapes[layer_prefix + f"0.{fc1}"][0] if n_layers else 4 * hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": heads,
        "max_position_embeddings": positions,
        "hidden_act": act,
        "projection_dim": projection_dim,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": pad_id,
    }
    with_projection = family == "sdxl_refiner" or (family == "sdxl" and layout == "open_clip")
    return TextEncoderSpec(prefix, layout, config, with_projection, pad_id)
