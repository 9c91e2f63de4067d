"""Random-weight stand-ins, at tiny widths, for the Flux image-reference files: a SigLIP vision encoder in
ComfyUI's `sigclip_vision_patch14_384` layout (transformers' names under `vision_model.`), a Flux Redux
style model (`redux_up`, `redux_down`) and USO's style projector (`feature_embedder.*`), written from the
published key layouts."""

from __future__ import annotations

from typing import Any

import torch

from tests.nodes.flow_fixtures import JOINT

# 20 layers: USO reads the 20th from last. A 28-px input in 14-px patches: 4 tokens.
SIGLIP = {"hidden": 16, "layers": 20, "heads": 2, "image": 28, "patch": 14}
SIGLIP_TOKENS = (SIGLIP["image"] // SIGLIP["patch"]) ** 2
FLUX_WIDTH = 128  # the tiny Flux's inner width (1 head × 128)


def tiny_siglip(seed: int = 0) -> Any:
    """A transformers SiglipVisionModel without its pooling head, with ComfyUI's layer-norm eps."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    config = SiglipVisionConfig(
        hidden_size=SIGLIP["hidden"],
        intermediate_size=2 * SIGLIP["hidden"],
        num_hidden_layers=SIGLIP["layers"],
        num_attention_heads=SIGLIP["heads"],
        image_size=SIGLIP["image"],
        patch_size=SIGLIP["patch"],
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-5,
        vision_use_head=False,
    )
    model = SiglipVisionModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def siglip_layout(model: Any) -> dict[str, torch.Tensor]:
    """The model's weights under ComfyUI's names (`vision_model.` + transformers' names)."""
    return {
        "vision_model." + k.removeprefix("vision_model."): v.contiguous()
        for k, v in model.state_dict().items()
        if "position_ids" not in k
    }


def redux_layout(vision: int = SIGLIP["hidden"], text: int = JOINT, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    return {
        "redux_up.weight": rand(3 * text, vision),
        "redux_up.bias": rand(3 * text),
        "redux_down.weight": rand(text, 3 * text),
        "redux_down.bias": rand(text),
    }


def uso_layout(
    tokens: int = SIGLIP_TOKENS, style_tokens: int = 3, dims: int = SIGLIP["hidden"], hidden: int = FLUX_WIDTH
) -> dict[str, torch.Tensor]:
    """USO's projector with random weights (three levels: token mixing, layer norm, projection)."""
    generator = torch.Generator().manual_seed(2)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.3

    weights: dict[str, torch.Tensor] = {}
    for level in ("high", "mid", "low"):
        p = f"feature_embedder.{level}_"
        weights |= {
            p + "embedding_linear.0.weight": rand(style_tokens, tokens),
            p + "embedding_linear.0.bias": rand(style_tokens),
            p + "layer_norm.weight": 1 + rand(dims),
            p + "layer_norm.bias": rand(dims),
            p + "projection.weight": rand(hidden, dims),
            p + "projection.bias": rand(hidden),
        }
    return weights
