"""SigLIP vision encoders ("Sigmoid Loss for Language Image Pre-Training", Zhai et al. 2023), as ComfyUI
reads them for Flux Redux and USO: google's so400m/patch14 at 384 px (ComfyUI's
`sigclip_vision_patch14_384.safetensors`) and so400m/patch16 at 512 px, built on transformers'
`SiglipVisionModel`.

The files use transformers' key names under `vision_model.` (`embeddings.patch_embedding.{weight,bias}`,
`embeddings.position_embedding.weight`, `encoder.layers.N.*`, `post_layernorm.*`; a `head.*` attention
pooler may follow, which ComfyUI ignores and so does Loom). Unlike CLIP they have no class token and no
pre-norm, the patch convolution has a bias, and there is one position per patch. ComfyUI runs them with
its own layer norms (eps 1e-5, where transformers' SigLIP config says 1e-6); the configs here say 1e-5 so
that the two engines' features agree. Smaller encoders in the same layout (tests, stand-ins) are
configured from their shapes, with the heads from the file's `loom.arch` metadata (16 otherwise).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import UnsupportedModelError

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
PATCH_BIAS = "vision_model.embeddings.patch_embedding.bias"
CLASS_EMBEDDING = "vision_model.embeddings.class_embedding"
# (width, layers, positions, patch) of the released encoders → their config file. The input size is not
# the patch grid's: 384 px in 14-px patches is 27 × 27 (the convolution drops the last 6 pixels).
KNOWN = {(1152, 27, 729, 14): "siglip_384", (1152, 27, 1024, 16): "siglip_512"}


def is_siglip(shapes: Mapping[str, Any]) -> bool:
    """Whether transformers-named vision keys are SigLIP's (a patch bias and no class token)."""
    return PATCH_BIAS in shapes and CLASS_EMBEDDING not in shapes


def siglip_config(
    shapes: Mapping[str, tuple[int, ...]], hints: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """(name, transformers SiglipVisionConfig fields) of the encoder whose shapes are given."""
    from .clip_vision import CONFIGS, HF_PROBE

    patch = shapes[HF_PROBE]
    hidden, patch_size = patch[0], patch[2]
    positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise UnsupportedModelError(f"SigLIP vision: {positions} position embeddings is not a square grid")
    layer_ids = {
        int(m.group(1)) for k in shapes if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))
    }
    if not layer_ids:
        raise UnsupportedModelError("SigLIP vision: the file holds no encoder layers")
    layers = max(layer_ids) + 1
    image_size = grid * patch_size
    known = KNOWN.get((hidden, layers, positions, patch_size))
    if known is not None:
        return known, json.loads((CONFIGS / f"{known}.json").read_text())
    heads = int(hints.get("heads", 16))
    if hidden % heads:
        raise UnsupportedModelError(
            f"SigLIP vision: cannot split width {hidden} into {heads} heads; record 'heads' in the file's "
            "'loom.arch' metadata"
        )
    return "siglip_custom", {
        "hidden_size": hidden,
        "intermediate_size": shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0],
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "image_size": image_size,
        "patch_size": patch_size,
        "num_channels": patch[1],
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-5,
        "vision_use_head": False,
    }


def build_siglip(config: Mapping[str, Any], state: Mapping[str, Any], dtype: Any) -> Any:
    """A transformers `SiglipVisionModel` (no pooling head) filled from `state` (keys under
    `vision_model.`), in eval mode with gradients off."""
    from accelerate import init_empty_weights
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from transformers.initialization import no_init_weights

    fields = {k: v for k, v in config.items() if k != "model_type"}
    with init_empty_weights(include_buffers=False), no_init_weights():
        model = SiglipVisionModel(SiglipVisionConfig(**fields))
    own = dict(model.named_parameters())
    prefix = "vision_model." if next(iter(own)).startswith("vision_model.") else ""
    named = {prefix + k.removeprefix("vision_model."): v for k, v in state.items()}
    missing = sorted(set(own) - set(named))
    if missing:
        raise UnsupportedModelError(f"SigLIP vision: {len(missing)} weights missing, e.g. {missing[:3]}")
    fitted = {}
    for key, param in own.items():
        if tuple(named[key].shape) != tuple(param.shape):
            raise UnsupportedModelError(
                f"SigLIP vision: weight {key} has shape {tuple(named[key].shape)}, expected "
                f"{tuple(param.shape)}"
            )
        fitted[key] = named[key].to(dtype).contiguous()
    model.load_state_dict(fitted, strict=False, assign=True)
    return model.eval().requires_grad_(False)
