"""Lotus-D (He et al. 2024, "Lotus: Diffusion-based Visual Foundation Model for High-quality Dense
Prediction", arXiv:2409.18124): an SD2-style UNet fine-tuned to map an image latent to a depth (or normal)
latent in one step.

Detected from keys and shapes, in both layouts a user may have in models/diffusion_models:
* diffusers' (`conv_in.*`, `class_embedding.linear_1.*`; what Comfy-Org ships as lotus-depth-d-v1-1);
* the original/ComfyUI one (`input_blocks.*`, `label_emb.0.*`, bare or under `model.diffusion_model.`).
What sets Lotus apart from other SD2 UNets is its class embedding of 4 inputs (a task switch, fed
[sin 1, sin 0, cos 1, cos 0] for the prediction task). Widths, depths and levels are read from the shapes;
attention heads are 64 channels each, as SD2's (and as ComfyUI after 0.3.64: its 0.3.64 builds Lotus with
8 heads a layer, which it later corrected).

It samples as ComfyUI's IMG_TO_IMG model type: SD's discrete sigma table, the network sees the latent
unscaled and predicts the clean latent (engine.sampling.model_sampling_x0.ImgToImgSampling).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .detect import UNET_PREFIX, Shapes
from .errors import UnsupportedModelError

TASK_INPUTS = 4  # the class-embedding input width of every Lotus-D UNet
HEAD_CHANNELS = 64
NULL_PROMPT_FILE = Path(__file__).resolve().parent / "lotus_data" / "null_prompt.safetensors"
NULL_PROMPT_KEY = "null_prompt"


def layout_of(shapes: Shapes) -> tuple[str, str] | None:
    """("diffusers", "") or ("ldm", key prefix) for a Lotus-D UNet, None for anything else."""
    embedding = shapes.get("class_embedding.linear_1.weight")
    conv_in = shapes.get("conv_in.weight")
    if embedding is not None and conv_in is not None and _is_lotus(embedding, conv_in):
        return ("diffusers", "")
    for prefix in (UNET_PREFIX, ""):
        embedding = shapes.get(prefix + "label_emb.0.0.weight")
        conv_in = shapes.get(prefix + "input_blocks.0.0.weight")
        if embedding is not None and conv_in is not None and _is_lotus(embedding, conv_in):
            return ("ldm", prefix)
    return None


def _is_lotus(embedding: tuple[int, ...], conv_in: tuple[int, ...]) -> bool:
    return len(embedding) == 2 and embedding[1] == TASK_INPUTS and len(conv_in) == 4 and conv_in[1] == 4


def _indices(shapes: Shapes, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in shapes if (m := pattern.match(k))})


def diffusers_config(shapes: Shapes) -> dict[str, Any]:
    """A `UNet2DConditionModel` config for a diffusers-layout Lotus-D UNet, from its shapes."""
    levels = _indices(shapes, "down_blocks.")
    channels = [shapes[f"down_blocks.{i}.resnets.0.conv2.weight"][0] for i in levels]
    depths = [len(_indices(shapes, f"down_blocks.{i}.attentions.0.transformer_blocks.")) for i in levels]
    has_attn = [d > 0 for d in depths]
    mid_depth = len(_indices(shapes, "mid_block.attentions.0.transformer_blocks.")) or 1
    depths[-1] = depths[-1] or mid_depth  # diffusers' mid block takes the last level's depth
    context = next(s[1] for k, s in shapes.items() if k.endswith("attn2.to_k.weight"))
    proj_in = next(s for k, s in shapes.items() if k.endswith("proj_in.weight"))
    config: dict[str, Any] = {
        "sample_size": 96,
        "in_channels": shapes["conv_in.weight"][1],
        "out_channels": shapes["conv_out.weight"][0],
        "block_out_channels": channels,
        "layers_per_block": len(_indices(shapes, "down_blocks.0.resnets.")),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attn)],
        "cross_attention_dim": context,
        "attention_head_dim": [_heads(ch) for ch in channels],
        "transformer_layers_per_block": [d or 1 for d in depths],
        "use_linear_projection": len(proj_in) == 2,
        "class_embed_type": "projection",
        "projection_class_embeddings_input_dim": shapes["class_embedding.linear_1.weight"][1],
    }
    time_dim = shapes["time_embedding.linear_1.weight"][0]
    if time_dim != 4 * channels[0]:
        config["time_embedding_dim"] = time_dim
    return config


def _heads(channels: int) -> int:
    if channels % HEAD_CHANNELS:
        raise UnsupportedModelError(
            f"a Lotus-D UNet level of {channels} channels does not split into {HEAD_CHANNELS}-channel heads"
        )
    return channels // HEAD_CHANNELS


class _Prefixed(Mapping[str, Any]):
    """`state` seen with `prefix` before every key (diffusers' LDM converter looks for
    `model.diffusion_model.`); lookups stay lazy."""

    def __init__(self, state: Mapping[str, Any], prefix: str) -> None:
        self.state, self.prefix = state, prefix

    def __getitem__(self, key: str) -> Any:
        return self.state[key.removeprefix(self.prefix)]

    def __iter__(self) -> Iterator[str]:
        return (self.prefix + k for k in self.state)

    def __len__(self) -> int:
        return len(self.state)


def build_unet(state: Mapping[str, Any], shapes: Shapes, layout: tuple[str, str], dtype: Any) -> Any:
    """The diffusers UNet of a Lotus-D state dict, its weights assigned in `dtype`."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from .checkpoint import _filled
    from .detect import unet_config_from_shapes

    kind, prefix = layout
    if kind == "diffusers":
        config = diffusers_config(shapes)
        return _filled(lambda: UNet2DConditionModel(**config), lambda m: dict(state), "Lotus-D UNet", dtype)
    ldm = state if prefix == UNET_PREFIX else _Prefixed(state, UNET_PREFIX)
    ldm_shapes = {UNET_PREFIX + k.removeprefix(prefix): s for k, s in shapes.items() if k.startswith(prefix)}
    config = unet_config_from_shapes(ldm_shapes, "sd2", "eps", {})
    config["sample_size"] = 96
    return _filled(
        lambda: UNet2DConditionModel(**config),
        lambda m: convert_ldm_unet_checkpoint(ldm, config),
        "Lotus-D UNet",
        dtype,
    )


def load_diffusion_model(path: Path, state: Mapping[str, Any], shapes: Shapes) -> Any:
    """UNETLoader: a Lotus-D file as a MODEL (ModelPatcher) sampled as ComfyUI's IMG_TO_IMG type."""
    from engine.diffusion.devices import manager
    from engine.diffusion.latent_formats import latent_format
    from engine.diffusion.lotus_model import Lotus
    from engine.diffusion.model_patcher import ModelPatcher
    from engine.sampling.model_sampling_x0 import ImgToImgSampling

    layout = layout_of(shapes)
    if layout is None:
        raise UnsupportedModelError(f"{path.name}: not a Lotus-D UNet")
    try:
        unet = build_unet(state, shapes, layout, manager().dtype("unet"))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{path.name}: detected Lotus-D but its weights do not fit: {exc}"
        ) from exc
    fmt = latent_format("sd2", 0.18215, {})
    return ModelPatcher(Lotus(unet, ImgToImgSampling("eps"), "sd2", fmt))


def null_prompt() -> Any:
    """Lotus' conditioning: SD2's OpenCLIP-H output for the empty prompt, [1, 2, 1024] float32 (read
    from Loom's data file; see bench/extract_lotus_conditioning.py for where the numbers come from)."""
    from safetensors.torch import load_file

    return load_file(str(NULL_PROMPT_FILE))[NULL_PROMPT_KEY]
