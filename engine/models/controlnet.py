"""ControlNet and T2I-Adapter files, detected from their keys and built as diffusers modules.

Layouts (the ones that circulate, as ComfyUI's comfy.controlnet reads them):
- original (lllyasviel) ControlNet: `control_model.*`, or the same keys bare (`input_blocks.*`,
  `zero_convs.*`, `input_hint_block.*`, `middle_block_out.*`); a `difference` key marks a "diff"
  ControlNet, stored as the change from its base UNet (DiffControlNetLoader adds the MODEL's weights);
- diffusers ControlNet (`controlnet_cond_embedding.*`, e.g. a `diffusion_pytorch_model.safetensors`);
- ControlNet Union for SDXL (diffusers keys plus `task_embedding` / `control_add_embedding`);
- control-LoRA (a `lora_controlnet` key): low-rank deltas over the sampled MODEL's own UNet weights;
- T2I-Adapter, full (`conv_in` + `body.N.block1`), SDXL full and light (`body.N.in_conv`), original or
  diffusers (`adapter.*`) names.

Configs are derived from shapes: widths, levels, depths and attention layout; attention heads follow
the family (SD1.x: 8 heads; SD2.x/SDXL: 64 channels a head), told apart by linear projections and the
SDXL size embedding. Nothing is read from the network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.diffusion.controlnet import ControlBase, ControlLora, ControlNet
from engine.diffusion.t2i_adapter import T2IAdapter

from .detect import UNET_PREFIX, unet_config_from_shapes
from .errors import UnsupportedModelError
from .files import load_state_dict

LDM_PREFIX = "control_model."
HINT_CONVS = 8  # input_hint_block.{0,2,...,14}: the hint encoder's convolutions


def load_controlnet(path: str | Path, model: Any = None) -> ControlBase:
    """The control object for a ControlNet or T2I-Adapter file. `model` (a ModelPatcher) is the base
    UNet a diff ControlNet's weights are relative to. Raises `UnsupportedModelError` naming the file
    when it is neither."""
    path = Path(path)
    state, _ = load_state_dict(path)
    try:
        control = load_controlnet_state_dict(state, model)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path.name}: {exc}") from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{path.name}: looks like a ControlNet but its weights do not fit: {exc}"
        ) from exc
    if path.stem.endswith(("_shuffle", "_shuffle_fp16")):
        control.global_average_pooling = True  # ComfyUI's rule for the v1.1 shuffle ControlNet
    control.source = path.name
    return control


def load_controlnet_state_dict(state: dict[str, Any], model: Any = None) -> ControlBase:
    """Detect the layout of `state` and build its control object."""
    from .controlnet_flow import flow_controlnet_kind, load_flow_controlnet

    kind = flow_controlnet_kind(state)
    if kind is not None:
        return load_flow_controlnet(kind, state)
    if "lora_controlnet" in state:
        return ControlLora(state)
    if "controlnet_cond_embedding.conv_in.weight" in state:
        if "control_add_embedding.linear_1.weight" in state:
            from .controlnet_union import build_union

            return ControlNet(build_union(state))
        return ControlNet(_diffusers_controlnet(state))
    if LDM_PREFIX + "zero_convs.0.0.weight" in state:
        bare = {k[len(LDM_PREFIX) :]: v for k, v in state.items() if k.startswith(LDM_PREFIX)}
        if "difference" in state:
            bare = _add_base_weights(bare, model)
        return ControlNet(controlnet_from_ldm(bare))
    if "zero_convs.0.0.weight" in state:
        return ControlNet(controlnet_from_ldm(state))
    adapter = t2i_adapter(state)
    if adapter is not None:
        return adapter
    raise UnsupportedModelError(
        "not a ControlNet or T2I-Adapter (no control_model.*, zero_convs.*, controlnet_cond_embedding.*, "
        "lora_controlnet or adapter keys)"
    )


def _add_base_weights(bare: dict[str, Any], model: Any) -> dict[str, Any]:
    """A diff ControlNet holds its change from the base UNet: add the MODEL's weights back."""
    import logging

    if model is None:
        logging.getLogger(__name__).warning(
            "a diff ControlNet loaded without a MODEL will very likely not work"
        )
        return bare
    base = model.model.state_dict() if hasattr(model, "model") else model.state_dict()
    out = dict(bare)
    for key, value in bare.items():
        own = base.get("diffusion_model." + key)
        if own is not None and own.shape == value.shape:
            out[key] = value + own.to(value.dtype)
    return out


def weights_dtype() -> Any:
    """The dtype control networks compute in: the UNet's (fp16 on CUDA, fp32 on the CPU)."""
    from engine.diffusion.devices import manager

    return manager().dtype("unet")


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _family_of(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> str:
    """SDXL has the size embedding, SD2.x linear projections; SD1.x neither (the heads differ)."""
    if prefix + "label_emb.0.0.weight" in shapes or "add_embedding.linear_1.weight" in shapes:
        return "sdxl"
    proj = next((s for k, s in shapes.items() if k.endswith("proj_in.weight")), None)
    return "sd2" if proj is not None and len(proj) == 2 else "sd1"


def controlnet_config_from_ldm(bare: Mapping[str, Any], family: str | None = None) -> dict[str, Any]:
    """A diffusers ControlNetModel config for an original-layout ControlNet (keys without a prefix)."""
    shapes = {UNET_PREFIX + k: s for k, s in _shapes(bare).items()}
    shapes[UNET_PREFIX + "out.2.weight"] = (shapes[UNET_PREFIX + "input_blocks.0.0.weight"][1],)
    family = family or _family_of(shapes, UNET_PREFIX)
    pooled = None
    if family == "sdxl":
        adm = shapes[UNET_PREFIX + "label_emb.0.0.weight"][1]
        pooled = adm - 6 * _time_ids_dim(adm)
    unet = unet_config_from_shapes(shapes, family, "eps", {}, pooled)  # type: ignore[arg-type]
    hint = [tuple(bare[f"input_hint_block.{2 * i}.weight"].shape) for i in range(HINT_CONVS)]
    return _controlnet_config(unet, hint[0][1], [hint[0][0]] + [s[0] for s in hint[2:-1:2]])


def _controlnet_config(unet: dict[str, Any], hint_channels: int, embedding: list[int]) -> dict[str, Any]:
    keep = (
        "in_channels",
        "down_block_types",
        "block_out_channels",
        "layers_per_block",
        "cross_attention_dim",
        "attention_head_dim",
        "use_linear_projection",
        "transformer_layers_per_block",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
        "upcast_attention",
        "norm_num_groups",
    )
    config = {k: unet[k] for k in keep if k in unet}
    config["conditioning_channels"] = hint_channels
    config["conditioning_embedding_out_channels"] = tuple(embedding)
    return config


def controlnet_from_ldm(bare: Mapping[str, Any], family: str | None = None) -> Any:
    """A diffusers ControlNetModel filled from an original-layout ControlNet state dict."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    config = controlnet_config_from_ldm(bare, family)
    converted = convert_controlnet_checkpoint(dict(bare), config)
    for index, linear in ((0, 1), (2, 2)):  # SDXL's size embedding, which diffusers' converter skips
        for kind in ("weight", "bias"):
            if f"label_emb.0.{index}.{kind}" in bare:
                converted[f"add_embedding.linear_{linear}.{kind}"] = bare[f"label_emb.0.{index}.{kind}"]
    return _build_controlnet(config, {k: v for k, v in converted.items() if v is not None})


def _build_controlnet(config: dict[str, Any], state: dict[str, Any]) -> Any:
    import torch
    from diffusers import ControlNetModel

    with torch.device("meta"):
        model: Any = ControlNetModel(**config)
    dtype = weights_dtype()
    missing, unexpected = model.load_state_dict(
        {k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True
    )
    if missing:
        raise ValueError(f"missing weights {sorted(missing)[:5]}")
    if unexpected:
        raise ValueError(f"unexpected weights {sorted(unexpected)[:5]}")
    return model.eval().requires_grad_(False)


def _count(shapes: Mapping[str, Any], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := regex.match(k))})


def diffusers_controlnet_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """A ControlNetModel config from diffusers-named ControlNet weights."""
    shapes = _shapes(state)
    levels = _count(shapes, r"down_blocks\.(\d+)\.")
    channels = [shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0] for i in range(levels)]
    depths, has_attn = [], []
    for i in range(levels):
        depth = _count(shapes, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.")
        has_attn.append(depth > 0)
        depths.append(depth)
    mid_depth = _count(shapes, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\.") or 1
    depths[-1] = depths[-1] or mid_depth
    family = _family_of(shapes, "")
    heads = [8] * levels if family == "sd1" else [max(1, c // 64) for c in channels]
    context = next(s[1] for k, s in shapes.items() if k.endswith("attn2.to_k.weight"))
    blocks = _count(shapes, r"controlnet_cond_embedding\.blocks\.(\d+)\.")
    embedding = [shapes["controlnet_cond_embedding.conv_in.weight"][0]] + [
        shapes[f"controlnet_cond_embedding.blocks.{i}.weight"][0] for i in range(1, blocks, 2)
    ]
    proj = next(s for k, s in shapes.items() if k.endswith("proj_in.weight"))
    unet: dict[str, Any] = {
        "in_channels": shapes["conv_in.weight"][1],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn],
        "block_out_channels": channels,
        "layers_per_block": _count(shapes, r"down_blocks\.0\.resnets\.(\d+)\."),
        "cross_attention_dim": context,
        "attention_head_dim": heads,
        "use_linear_projection": len(proj) == 2,
        "transformer_layers_per_block": [d or 1 for d in depths],
    }
    if "add_embedding.linear_1.weight" in shapes:
        adm = shapes["add_embedding.linear_1.weight"][1]
        unet |= {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": _time_ids_dim(adm),
            "projection_class_embeddings_input_dim": adm,
        }
    return _controlnet_config(unet, shapes["controlnet_cond_embedding.conv_in.weight"][1], embedding)


def _time_ids_dim(adm: int) -> int:
    """The width of each of SDXL's six size/crop embeddings, from the size embedding's input width
    (pooled text + 6 of them; no weight records it): the largest power of two that leaves room for the
    pooled text embedding (256 for SDXL: 2816 = 1280 + 6 x 256)."""
    return next((d for d in (256, 128, 64, 32, 16, 8, 4) if adm - 6 * d > 0), 1)


def _diffusers_controlnet(state: dict[str, Any]) -> Any:
    return _build_controlnet(diffusers_controlnet_config(state), state)


def controlnet_from_lora(control_weights: Mapping[str, Any], model: Any) -> Any:
    """The ControlNet of a control-LoRA on `model` (a DiffusionModel): its UNet's encoder weights, each
    changed by `up @ down` where the file has a low-rank pair, replaced where it has a whole weight."""
    base = {k[len("diffusion_model.") :]: v for k, v in model.state_dict().items()}
    merged = {k: v for k, v in base.items() if not k.startswith(("output_blocks.", "out."))}
    for key, value in control_weights.items():
        if key == "lora_controlnet" or "__" in key:
            continue
        if key.endswith(".up"):
            name = key[: -len(".up")] + ".weight"
            down = control_weights[key[: -len(".up")] + ".down"]
            delta = value.flatten(1).float() @ down.flatten(1).float()
            base_weight = merged[name]
            merged[name] = base_weight.float() + delta.reshape(base_weight.shape).to(base_weight.device)
        elif key.endswith((".weight", ".bias")):
            merged[key] = value
    return controlnet_from_ldm(merged, model.family).to(model.get_dtype())


def t2i_adapter(state: dict[str, Any]) -> T2IAdapter | None:
    """A T2I-Adapter in original or diffusers names (full, full SDXL, light), or None."""
    from diffusers import T2IAdapter as DiffusersAdapter

    if "adapter" in state and isinstance(state["adapter"], dict):
        state = state["adapter"]
    if any(k.startswith("adapter.") for k in state):
        diffusers_state = dict(state)
    elif "body.0.in_conv.weight" in state:
        diffusers_state = _light_to_diffusers(state)
    elif "conv_in.weight" in state and "body.0.block1.weight" in state:
        diffusers_state = _full_to_diffusers(state)
    else:
        return None
    config = adapter_config(_shapes(diffusers_state))
    import torch

    with torch.device("meta"):
        adapter: Any = DiffusersAdapter(**config)
    dtype = weights_dtype()
    adapter.load_state_dict({k: v.to(dtype) for k, v in diffusers_state.items()}, strict=True, assign=True)
    adapter.eval().requires_grad_(False)
    return T2IAdapter(adapter, config["in_channels"], 8, "nearest-exact")


def _light_to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        new = re.sub(r"^body\.(\d+)\.body\.(\d+)\.", r"body.\1.resnets.\2.", key)
        out["adapter." + new] = value
    return out


def _full_to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original full adapters number their resnet blocks across levels (`body.{level*n + j}`)."""
    if any(k.endswith("down_opt.op.weight") for k in state) or state["body.0.block2.weight"].shape[-1] != 1:
        raise UnsupportedModelError(
            "a T2I-Adapter with convolutional downsampling or 3x3 output kernels, which diffusers' "
            "T2IAdapter cannot represent"
        )
    per_level = _count(state, r"body\.(\d+)\.") // 4
    out = {}
    for key, value in state.items():
        match = re.match(r"body\.(\d+)\.(.*)", key)
        if match is None:
            out["adapter." + key] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        level, block = divmod(index, per_level)
        if rest.startswith("in_conv."):
            out[f"adapter.body.{level}.{rest}"] = value
        else:
            out[f"adapter.body.{level}.resnets.{block}.{rest}"] = value
    return out


def adapter_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """diffusers T2IAdapter config from diffusers-named adapter weights."""
    levels = _count(shapes, r"adapter\.body\.(\d+)\.")
    blocks = _count(shapes, r"adapter\.body\.0\.resnets\.(\d+)\.")
    if "adapter.conv_in.weight" not in shapes:  # light
        unshuffled = shapes["adapter.body.0.in_conv.weight"][1]
        channels = [shapes[f"adapter.body.{i}.out_conv.weight"][0] for i in range(levels)][:-1]
        kind, factor = "light_adapter", 8
    else:
        unshuffled = shapes["adapter.conv_in.weight"][1]
        channels = [shapes[f"adapter.body.{i}.resnets.0.block1.weight"][0] for i in range(levels)]
        # SDXL adapters unshuffle by 16 (ComfyUI tells them by their 256 or 768 input channels)
        kind, factor = ("full_adapter_xl", 16) if unshuffled in (256, 768) else ("full_adapter", 8)
    return {
        "in_channels": unshuffled // (factor * factor),
        "channels": channels,
        "num_res_blocks": blocks,
        "downscale_factor": factor,
        "adapter_type": kind,
    }
