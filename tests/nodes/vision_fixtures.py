"""Random-weight stand-ins, at tiny widths, for the image-prompt model files that circulate: CLIP vision
encoders (transformers' layout and open_clip's `visual.*`), an SD2.1 unCLIP checkpoint, a T2I-Adapter
style model and a GLIGEN model in ComfyUI's layout. Written from the published key layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

VISION = {"hidden": 32, "layers": 3, "image": 28, "patch": 14, "projection": 16, "heads": 16}


def tiny_vision(seed: int = 0, projection: int = VISION["projection"]) -> Any:
    """A CLIPVisionModelWithProjection: 32 wide, 3 layers, 28-px input in 14-px patches (2×2 + class)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=VISION["hidden"],
        intermediate_size=2 * VISION["hidden"],
        num_hidden_layers=VISION["layers"],
        num_attention_heads=VISION["heads"],
        image_size=VISION["image"],
        patch_size=VISION["patch"],
        projection_dim=projection,
        hidden_act="quick_gelu",
    )
    model = CLIPVisionModelWithProjection(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def hf_layout(model: Any) -> dict[str, torch.Tensor]:
    """transformers' keys, with the position_ids buffer older transformers saved."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    positions = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    state["vision_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return state


def open_clip_layout(model: Any, prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """open_clip's VisionTransformer keys: conv1, class_embedding, positional_embedding, ln_pre/ln_post,
    transformer.resblocks.N (fused in_proj, ln_1/ln_2, mlp.c_fc/c_proj) and proj ([width, projection])."""
    sd = model.state_dict()
    v = "vision_model."
    out = {
        "conv1.weight": sd[v + "embeddings.patch_embedding.weight"],
        "class_embedding": sd[v + "embeddings.class_embedding"],
        "positional_embedding": sd[v + "embeddings.position_embedding.weight"],
        "ln_pre.weight": sd[v + "pre_layrnorm.weight"],
        "ln_pre.bias": sd[v + "pre_layrnorm.bias"],
        "ln_post.weight": sd[v + "post_layernorm.weight"],
        "ln_post.bias": sd[v + "post_layernorm.bias"],
        "proj": sd["visual_projection.weight"].t(),
    }
    for i in range(VISION["layers"]):
        src, dst = f"{v}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            parts = [sd[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(parts)
            out[f"{dst}attn.out_proj.{kind}"] = sd[f"{src}self_attn.out_proj.{kind}"]
            out[f"{dst}ln_1.{kind}"] = sd[f"{src}layer_norm1.{kind}"]
            out[f"{dst}ln_2.{kind}"] = sd[f"{src}layer_norm2.{kind}"]
            out[f"{dst}mlp.c_fc.{kind}"] = sd[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}mlp.c_proj.{kind}"] = sd[f"{src}mlp.fc2.{kind}"]
    return {prefix + k: t.clone().contiguous() for k, t in out.items()}


def write(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def write_unclip_checkpoint(path: Path, vision: Any) -> Path:
    """A tiny SD2.x (v-prediction) checkpoint whose UNet takes a class embedding of 2 × the vision
    projection width (noised image embedding + noise-level embedding), with the vision encoder under
    `embedder.model.visual.` and the noise augmentor's schedule buffers, as SD2.1 unCLIP files have."""
    from diffusers import UNet2DConditionModel
    from safetensors import safe_open

    from engine.models.save import save_single_file
    from engine.models.tiny import _unet_config, build_tiny

    tiny = build_tiny("sd2", seed=3)
    config = {
        **_unet_config("sd2"),
        "class_embed_type": "projection",
        "projection_class_embeddings_input_dim": 2 * vision.config.projection_dim,
    }
    torch.manual_seed(4)
    unet = UNet2DConditionModel(**config).eval()
    with torch.no_grad():
        for param in unet.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    save_single_file(path, unet, tiny.vae, tiny.text_encoders, "sd2", None, "v_prediction")
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open has no iterator)
        metadata = f.metadata()
    state |= open_clip_layout(vision, "embedder.model.visual.")
    steps = torch.arange(1000, dtype=torch.float32)
    state |= {"noise_augmentor.betas": steps * 1e-5, "noise_augmentor.alphas_cumprod": 1 - steps * 1e-4}
    return write(path, state, metadata)


def style_layout(
    width: int = 32, context: int = 64, tokens: int = 8, layers: int = 2
) -> dict[str, torch.Tensor]:
    """T2I-Adapter style model: transformer_layes.N (MultiheadAttention in_proj, ln_1/2, mlp.c_fc/c_proj),
    style_embedding [1, tokens, width], ln_pre, ln_post, proj [width, context]."""
    gen = torch.Generator().manual_seed(5)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    state = {
        "style_embedding": rand(1, tokens, width, scale=1.0),
        "proj": rand(width, context),
        "ln_pre.weight": 1 + rand(width),
        "ln_pre.bias": rand(width),
        "ln_post.weight": 1 + rand(width),
        "ln_post.bias": rand(width),
    }
    for i in range(layers):
        p = f"transformer_layes.{i}."
        state |= {
            p + "attn.in_proj_weight": rand(3 * width, width),
            p + "attn.in_proj_bias": rand(3 * width),
            p + "attn.out_proj.weight": rand(width, width),
            p + "attn.out_proj.bias": rand(width),
            p + "ln_1.weight": 1 + rand(width),
            p + "ln_1.bias": rand(width),
            p + "ln_2.weight": 1 + rand(width),
            p + "ln_2.bias": rand(width),
            p + "mlp.c_fc.weight": rand(4 * width, width),
            p + "mlp.c_fc.bias": rand(4 * width),
            p + "mlp.c_proj.weight": rand(width, 4 * width),
            p + "mlp.c_proj.bias": rand(width),
        }
    return state


# The tiny SD1 UNet's transformers (engine.models.tiny): ComfyUI block, channels.
TINY_SD1_TRANSFORMERS = (
    ("input_blocks.1.1", 32),
    ("middle_block.1", 64),
    ("output_blocks.2.1", 32),
    ("output_blocks.3.1", 32),
)


def gligen_layout(text_width: int = 64, alpha: float = 1.0, prefix: str = "") -> dict[str, torch.Tensor]:
    """GLIGEN in ComfyUI's pruned layout for the tiny SD1 UNet: position_net.* (phrases `text_width`
    wide, grounding tokens as wide as the UNet's context) and one `fuser` per UNet transformer; `alpha` sets
    the gates (tanh(0) = 0 turns every fuser off)."""
    from diffusers.models.attention import GatedSelfAttentionDense
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

    torch.manual_seed(6)
    state: dict[str, torch.Tensor] = {}
    net = GLIGENTextBoundingboxProjection(
        positive_len=text_width, out_dim=text_width, feature_type="text-only"
    )
    with torch.no_grad():  # the null (padding) features start at zero; make them tell apart
        net.null_positive_feature.normal_(0, 0.1)
        net.null_position_feature.normal_(0, 0.1)
    state |= {f"{prefix}position_net.{k}": v for k, v in net.state_dict().items()}
    for block, channels in TINY_SD1_TRANSFORMERS:
        fuser = GatedSelfAttentionDense(channels, text_width, channels // 8, 8)
        with torch.no_grad():
            fuser.alpha_attn.fill_(alpha)
            fuser.alpha_dense.fill_(alpha)
        state |= {f"{prefix}{block}.transformer_blocks.0.fuser.{k}": v for k, v in fuser.state_dict().items()}
    return {k: v.clone().contiguous() for k, v in state.items()}


def arch(**hints: Any) -> dict[str, str]:
    return {"loom.arch": json.dumps(hints)}


def capture(executor: Any, source: str) -> dict[str, Any]:
    """A prompt fragment that makes `source`'s first output an output of the prompt."""
    from tests.nodes.harness import TestCapture

    if TestCapture.__name__ not in executor.registry:
        executor.registry.register(TestCapture)
    return {"cap": {"class_type": TestCapture.__name__, "inputs": {"value": [source, 0], "key": "k"}}}
