"""CLIP vision encoders (OpenAI CLIP-ViT-L/14 at 224 and 336 px, OpenCLIP ViT-H/14 and ViT-bigG/14), read
from the layouts that circulate and built on transformers' `CLIPVisionModelWithProjection`; SigLIP encoders
(Flux Redux, USO) in transformers' layout are told apart by their keys and built in `siglip_vision`.

Two key layouts are understood, told apart by their keys:
- transformers' (`vision_model.embeddings.*`, `vision_model.encoder.layers.N.*`, `visual_projection.weight`,
  optionally LLaVA's `multi_modal_projector.*`): clip_vision files, IP-Adapter image encoders;
- open_clip's (`visual.conv1.weight`, `visual.transformer.resblocks.N.attn.in_proj_weight`, `visual.proj`),
  as found inside checkpoints under a prefix (`embedder.model.visual.` in SD2.1 unCLIP files).

The four released models are recognised by width, depth and input size and take their configuration from
`clip_vision_configs/`; other (smaller) encoders in the same layouts are configured from their shapes, with
the attention heads and activation from the file's `loom.arch` metadata where given (16 heads and
quick_gelu otherwise, as ViT-L/14).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .detect import ARCH_METADATA_KEY, describe_keys
from .errors import UnsupportedModelError

CONFIGS = Path(__file__).parent / "clip_vision_configs"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HF_PROBE = "vision_model.embeddings.patch_embedding.weight"
OPEN_CLIP_PROBE = "transformer.resblocks.0.attn.in_proj_weight"
# (hidden width, layers, input size) of the released encoders → their config file.
KNOWN = {
    (1024, 24, 224): "vit_l_14",
    (1024, 24, 336): "vit_l_14_336",
    (1280, 32, 224): "vit_h_14",
    (1664, 48, 224): "vit_bigg_14",
}
_OPEN_CLIP_LAYER = (
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
    ("attn.out_proj.", "self_attn.out_proj."),
)
_OPEN_CLIP_TOP = {
    "class_embedding": "vision_model.embeddings.class_embedding",
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}


@dataclass(frozen=True)
class VisionSpec:
    """What to build: a transformers CLIPVisionConfig's fields, the encoder's name, and whether a LLaVA
    projector (`multi_modal_projector.*`) comes with it."""

    name: str
    config: dict[str, Any]
    llava_projector: bool = False
    kind: str = "clip"  # or "siglip" (engine.models.siglip_vision)

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The normalisation of the encoder's pixel values (ComfyUI's image_mean / image_std)."""
        from .siglip_vision import SIGLIP_MEAN, SIGLIP_STD

        return (SIGLIP_MEAN, SIGLIP_STD) if self.kind == "siglip" else (CLIP_MEAN, CLIP_STD)


def find_layout(keys: Any, prefix: str = "") -> str | None:
    """ "hf" or "open_clip" when keys under `prefix` hold a vision encoder, else None."""
    keys = set(keys)
    if prefix + HF_PROBE in keys:
        return "hf"
    if prefix + OPEN_CLIP_PROBE in keys and prefix + "conv1.weight" in keys:
        return "open_clip"
    return None


def open_clip_to_hf(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """open_clip's `visual.*` keys under `prefix` in transformers' names (q/k/v split, `proj` transposed)."""
    out: dict[str, Any] = {}
    layer = re.compile(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.(.+)")
    for key in state:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[rest]] = state[key]
        elif rest == "proj":
            out["visual_projection.weight"] = state[key].transpose(0, 1)
        elif match := layer.match(key):
            base = f"vision_model.encoder.layers.{match.group(1)}."
            name = match.group(2)
            if name.startswith("attn.in_proj_"):
                kind = name.rsplit("_", 1)[1]  # "weight" or "bias"
                for part, tensor in zip(("q", "k", "v"), state[key].chunk(3, dim=0), strict=True):
                    out[f"{base}self_attn.{part}_proj.{kind}"] = tensor
                continue
            for old, new in _OPEN_CLIP_LAYER:
                if name.startswith(old):
                    out[base + new + name[len(old) :]] = state[key]
                    break
    return out


def hf_state(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The vision encoder's tensors under transformers' names, from either layout under `prefix`."""
    layout = find_layout(state.keys(), prefix)
    if layout == "open_clip":
        return open_clip_to_hf(state, prefix)
    if layout == "hf":
        return {k[len(prefix) :]: state[k] for k in state if k.startswith(prefix)}
    raise UnsupportedModelError(f"no CLIP vision encoder found; {describe_keys(dict.fromkeys(state, ()))}")


def detect_vision(
    shapes: Mapping[str, tuple[int, ...]], metadata: Mapping[str, str] | None = None
) -> VisionSpec:
    """The encoder in a transformers-named state dict (see `hf_state`), from its shapes."""
    from .siglip_vision import is_siglip, siglip_config

    if HF_PROBE not in shapes:
        raise UnsupportedModelError(f"not a CLIP vision encoder: {describe_keys(shapes)}")
    if is_siglip(shapes):
        name, config = siglip_config(shapes, _hints(metadata or {}))
        return VisionSpec(name, config, kind="siglip")
    patch = shapes[HF_PROBE]
    hidden, patch_size = patch[0], patch[2]
    positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise UnsupportedModelError(f"CLIP vision: {positions} position embeddings is not a square grid + 1")
    layer_ids = {
        int(m.group(1)) for k in shapes if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))
    }
    layers = max(layer_ids) + 1 if layer_ids else 0
    image_size = grid * patch_size
    llava = "multi_modal_projector.linear_1.weight" in shapes
    known = KNOWN.get((hidden, layers, image_size))
    if known is not None and patch_size == 14:
        config = json.loads((CONFIGS / f"{known}.json").read_text())
        return VisionSpec(known + ("_llava" if llava else ""), config, llava)
    hints = _hints(metadata or {})
    heads = int(hints.get("heads", 16))
    if hidden % heads:
        raise UnsupportedModelError(
            f"CLIP vision: cannot split width {hidden} into {heads} heads; record 'heads' in the file's "
            f"{ARCH_METADATA_KEY!r} metadata"
        )
    projection = shapes.get("visual_projection.weight")
    config = {
        "hidden_size": hidden,
        "intermediate_size": shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0]
        if layers
        else 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "image_size": image_size,
        "patch_size": patch_size,
        "num_channels": patch[1],
        "projection_dim": projection[0] if projection else hidden,
        "hidden_act": str(hints.get("hidden_act", "quick_gelu")),
        "layer_norm_eps": 1e-5,
    }
    return VisionSpec("custom", config, llava)


def _hints(metadata: Mapping[str, str]) -> dict[str, Any]:
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


def build_vision_model(spec: VisionSpec, state: Mapping[str, Any], dtype: Any = None) -> Any:
    """A transformers `CLIPVisionModelWithProjection` (and LLaVA projector, or None) filled from `state`
    (transformers names), in eval mode with gradients off."""
    import torch
    from accelerate import init_empty_weights
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.initialization import no_init_weights

    dtype = dtype or torch.float32
    if spec.kind == "siglip":
        from .siglip_vision import build_siglip

        return build_siglip(spec.config, state, dtype), None
    with init_empty_weights(include_buffers=False), no_init_weights():
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**spec.config))
    if "visual_projection.weight" not in state:  # some encoders ship without their projection: identity
        state = {**state, "visual_projection.weight": torch.eye(spec.config["hidden_size"])}
    _assign(model, state, dtype, "CLIP vision")
    projector = None
    if spec.llava_projector:
        projector = _llava_projector(spec, state, dtype)
    return model.eval().requires_grad_(False), projector


def _assign(model: Any, state: Mapping[str, Any], dtype: Any, what: str) -> None:
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(params - set(state))
    if missing:
        raise UnsupportedModelError(
            f"{what}: {len(missing)} weights missing from the file, e.g. {missing[:3]}"
        )
    own = model.state_dict()
    fitted = {}
    for key in params:
        tensor = state[key]
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise UnsupportedModelError(
                f"{what}: weight {key} has shape {tuple(tensor.shape)}, expected {tuple(own[key].shape)}"
            )
        fitted[key] = tensor.to(dtype).contiguous()
    model.load_state_dict(fitted, strict=False, assign=True)


def _llava_projector(spec: VisionSpec, state: Mapping[str, Any], dtype: Any) -> Any:
    """LLaVA's two-layer projector over the penultimate patch tokens (ComfyUI's `mm_projected`)."""
    import torch

    first = state["multi_modal_projector.linear_1.weight"]
    projector = torch.nn.ModuleDict(
        {
            "linear_1": torch.nn.Linear(first.shape[1], first.shape[0]),
            "linear_2": torch.nn.Linear(
                first.shape[0], state["multi_modal_projector.linear_2.weight"].shape[0]
            ),
        }
    )
    projector.load_state_dict(
        {k.removeprefix("multi_modal_projector."): v.to(dtype) for k, v in state.items() if "projector" in k}
    )
    return projector.to(dtype).eval().requires_grad_(False)
