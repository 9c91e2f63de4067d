"""Tiny model-patch files (models/model_patches) in their released layouts, with random weights: DiffSynth's
block-wise ControlNet for Qwen-Image, USO's style projector for Flux, and alibaba-pai's Z-Image Fun
ControlNet (1.0, 2.0, 2.1 and lite: diffusers' ZImageControlNetModel names, as the released files)."""

from __future__ import annotations

import torch

QWEN_WIDTH, QWEN_LAYERS = 128, 2  # the tiny Qwen-Image's (flow_fixtures_new) inner width and block count


def diffsynth_weights(
    seed: int, extra_channels: int = 0, layers: int = QWEN_LAYERS, width: int = QWEN_WIDTH
) -> dict[str, torch.Tensor]:
    """DiffSynth's Qwen-Image ControlNet: `img_in` from 64 packed latent channels (plus 4 per mask
    channel) and per block two RMS-norm scales and two linear layers."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    weights = {"img_in.weight": rand(width, 64 + 4 * extra_channels), "img_in.bias": rand(width)}
    for i in range(layers):
        p = f"controlnet_blocks.{i}."
        weights |= {
            p + "x_rms.weight": 1 + rand(width, scale=0.1),
            p + "y_rms.weight": 1 + rand(width, scale=0.1),
            p + "input_proj.weight": rand(width, width),
            p + "input_proj.bias": rand(width),
            p + "output_proj.weight": rand(width, width),
            p + "output_proj.bias": rand(width),
        }
    return weights


def uso_projector_weights(
    tokens: int = 9, style_tokens: int = 4, dims: int = 8, hidden: int = 128
) -> dict[str, torch.Tensor]:
    """USO's projector (`feature_embedder.{high,mid,low}_*`): SigLIP tokens → style tokens → hidden."""
    weights: dict[str, torch.Tensor] = {}
    for level in ("high", "mid", "low"):
        p = f"feature_embedder.{level}_"
        weights |= {
            p + "embedding_linear.0.weight": torch.zeros(style_tokens, tokens),
            p + "embedding_linear.0.bias": torch.zeros(style_tokens),
            p + "layer_norm.weight": torch.ones(dims),
            p + "layer_norm.bias": torch.zeros(dims),
            p + "projection.weight": torch.zeros(hidden, dims),
            p + "projection.bias": torch.zeros(hidden),
        }
    return weights


def zimage_fun_marker() -> dict[str, torch.Tensor]:
    """Only the key by which a Z-Image Fun ControlNet is recognised (an incomplete file)."""
    return {"control_all_x_embedder.2-1.weight": torch.zeros(4, 4)}


# The released files: 1.0 (6 layers, plain refiner, control latent only), 2.0 / 2.1 (15 layers, control
# refiner blocks, control latent + mask + inpaint latent; 2.0's refiner after_proj is all zeros), lite (3).
FUN_VERSIONS = {
    "1.0": (6, None, 16),
    "2.0": (15, "control_noise_refiner", 33),
    "2.1": (15, "control_noise_refiner", 33),
    "lite": (3, "control_noise_refiner", 33),
}


def zimage_fun_weights(
    seed: int, version: str = "2.1", width: int = 256, heads: int = 2, std: float = 0.05
) -> dict[str, torch.Tensor]:
    """A Z-Image Fun ControlNet at a tiny width, every weight random (before/after projections too)."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    layers, refiner, channels = FUN_VERSIONS[version]
    torch.manual_seed(seed)
    model = ZImageControlNetModel(
        control_layers_places=list(range(layers)),
        control_refiner_layers_places=[0, 1],
        control_in_dim=channels,
        add_control_noise_refiner=refiner,
        dim=width,
        n_heads=heads,
        n_kv_heads=heads,
    )
    weights = {}
    for key, value in model.state_dict().items():
        if key.endswith("norm1.weight") or key.endswith("norm2.weight") or ".norm_" in key:
            weights[key] = 1 + torch.randn_like(value) * std
        else:
            weights[key] = torch.randn_like(value) * std * 4
    if version == "2.0":
        for key in [k for k in weights if k.startswith("control_noise_refiner.") and "after_proj" in k]:
            weights[key] = torch.zeros_like(weights[key])
    return weights
