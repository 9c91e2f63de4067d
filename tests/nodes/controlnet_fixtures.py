"""Random-weight ControlNet and T2I-Adapter stand-ins in the key layouts that circulate, at tiny widths.

Each is built for the tiny SD1 UNet of `engine.models.tiny` (so it fits the tiny SD1 checkpoint) and
written in one real layout: original with `control_model.` (lllyasviel), original bare, diffusers,
diff (stored as the change from the base UNet), control-LoRA (low-rank deltas over the base UNet),
T2I-Adapter full and light in their original names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.models.keymap import unet_to_original
from engine.models.tiny import build_tiny

EMBEDDING = (8, 8, 16, 16)  # the hint encoder's widths (full size: 16, 32, 96, 256)


def tiny_controlnet(seed: int = 1, family: str = "sd1") -> Any:
    """A ControlNet copied from a tiny UNet, every weight (zero convolutions too) jittered."""
    from diffusers import ControlNetModel

    unet = build_tiny(family).unet  # type: ignore[arg-type]
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return net.eval().requires_grad_(False)


def controlnet_to_original(net: Any) -> dict[str, torch.Tensor]:
    """A diffusers ControlNetModel's weights under the original (bare) key names."""
    config = dict(net.config)
    config["up_block_types"] = [t.replace("Down", "Up") for t in reversed(config["down_block_types"])]
    own, rest = {}, {}
    for key, value in net.state_dict().items():
        (rest if key.startswith(("controlnet_",)) else own)[key] = value.contiguous()
    out = unet_to_original(own, config)
    blocks = len(config["conditioning_embedding_out_channels"]) * 2 - 2
    for key, value in rest.items():
        name, _, kind = key.rpartition(".")
        if name == "controlnet_cond_embedding.conv_in":
            out[f"input_hint_block.0.{kind}"] = value
        elif name == "controlnet_cond_embedding.conv_out":
            out[f"input_hint_block.{2 * (blocks + 1)}.{kind}"] = value
        elif name.startswith("controlnet_cond_embedding.blocks."):
            out[f"input_hint_block.{2 * (int(name.split('.')[-1]) + 1)}.{kind}"] = value
        elif name.startswith("controlnet_down_blocks."):
            out[f"zero_convs.{name.split('.')[-1]}.0.{kind}"] = value
        elif name == "controlnet_mid_block":
            out[f"middle_block_out.0.{kind}"] = value
        else:
            raise KeyError(key)
    return out


def base_unet_original(family: str = "sd1") -> dict[str, torch.Tensor]:
    unet = build_tiny(family).unet  # type: ignore[arg-type]
    return unet_to_original(unet.state_dict(), unet.config)


def write_controlnet(path: Path, layout: str, seed: int = 1, family: str = "sd1") -> Path:
    """Write a tiny ControlNet in `layout`: ldm, bare, diffusers, diff or control_lora."""
    net = tiny_controlnet(seed, family)
    if layout == "diffusers":
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
        return path
    bare = controlnet_to_original(net)
    if layout == "bare":
        save_file(bare, path)
    elif layout == "ldm":
        save_file({"control_model." + k: v for k, v in bare.items()}, path)
    elif layout == "diff":
        base = base_unet_original(family)
        diff = {k: v - base[k] if k in base else v for k, v in bare.items()}
        save_file(
            {"control_model." + k: v.contiguous() for k, v in diff.items()}
            | {"difference": torch.tensor([0.0])},
            path,
        )
    elif layout == "control_lora":
        save_file(control_lora_weights(bare, family), path)
    else:
        raise ValueError(layout)
    return path


def control_lora_weights(
    bare: dict[str, torch.Tensor], family: str = "sd1", rank: int = 2
) -> dict[str, torch.Tensor]:
    """A control-LoRA: rank-`rank` deltas for the 2-D+ weights the UNet shares, whole tensors for the
    rest (hint encoder, zero convolutions, biases, norms)."""
    base = base_unet_original(family)
    torch.manual_seed(3)
    out: dict[str, torch.Tensor] = {"lora_controlnet": torch.tensor([])}
    for key, value in bare.items():
        if key in base and key.endswith(".weight") and value.ndim >= 2:
            stem = key[: -len(".weight")]
            out[stem + ".up"] = torch.randn(value.shape[0], rank) * 0.05
            out[stem + ".down"] = torch.randn(rank, *value.shape[1:]) * 0.05
        else:
            out[key] = value.contiguous()
    return out


def tiny_adapter(kind: str, seed: int = 2) -> Any:
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    channels = [32, 64, 64] if kind == "light_adapter" else [32, 64, 64, 64]
    factor = 16 if kind == "full_adapter_xl" else 8
    adapter = T2IAdapter(
        in_channels=3, channels=channels, num_res_blocks=2, downscale_factor=factor, adapter_type=kind
    )
    with torch.no_grad():
        for param in adapter.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return adapter.eval().requires_grad_(False)


def adapter_to_original(adapter: Any) -> dict[str, torch.Tensor]:
    """Original TencentARC names: full adapters number resnet blocks across levels, light ones nest."""
    out = {}
    per_level = adapter.config.num_res_blocks
    light = adapter.config.adapter_type == "light_adapter"
    for key, value in adapter.state_dict().items():
        parts = key.split(".")[1:]  # drop "adapter."
        if parts[0] == "body" and light and parts[2] == "resnets":
            parts[2] = "body"
        elif parts[0] == "body" and not light:
            level = int(parts[1])
            if parts[2] == "resnets":
                parts = ["body", str(level * per_level + int(parts[3])), *parts[4:]]
            else:
                parts = ["body", str(level * per_level), *parts[2:]]
        out[".".join(parts)] = value.contiguous()
    return out


def write_adapter(path: Path, kind: str, diffusers_names: bool = False) -> Path:
    adapter = tiny_adapter(kind)
    state = adapter.state_dict() if diffusers_names else adapter_to_original(adapter)
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def write_union(path: Path, seed: int = 4) -> Path:
    """A ControlNet Union (diffusers names, as xinsir ships it) for the tiny SDXL UNet, 8 control types."""
    from diffusers import ControlNetUnionModel

    unet = build_tiny("sdxl").unet
    config = {k: unet.config[k] for k in (
        "in_channels", "down_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim",
        "attention_head_dim", "use_linear_projection", "transformer_layers_per_block", "addition_embed_type",
        "addition_time_embed_dim", "projection_class_embeddings_input_dim", "norm_num_groups")}  # fmt: skip
    torch.manual_seed(seed)
    width = unet.config.block_out_channels[0]
    net = ControlNetUnionModel(
        **config, conditioning_embedding_out_channels=EMBEDDING, num_control_type=8,
        num_trans_channel=width, num_trans_head=1, num_proj_channel=width,
    )  # fmt: skip
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path


SDXL_FILES = {
    "xl_cn_ldm.safetensors": lambda p: write_controlnet(p, "ldm", family="sdxl"),
    "xl_cn_diffusers.safetensors": lambda p: write_controlnet(p, "diffusers", family="sdxl"),
    "control-lora-xl.safetensors": lambda p: write_controlnet(p, "control_lora", family="sdxl"),
    "xl_union.safetensors": write_union,
    "t2i_xl.safetensors": lambda p: write_adapter(p, "full_adapter_xl"),
}

CONTROLNET_FILES = {
    "cn_ldm.safetensors": lambda p: write_controlnet(p, "ldm"),
    "cn_bare.safetensors": lambda p: write_controlnet(p, "bare"),
    "diffusion_pytorch_model.safetensors": lambda p: write_controlnet(p, "diffusers"),
    "cn_diff.safetensors": lambda p: write_controlnet(p, "diff"),
    "control-lora-tiny.safetensors": lambda p: write_controlnet(p, "control_lora"),
    "t2i_full.safetensors": lambda p: write_adapter(p, "full_adapter"),
    "t2i_light.safetensors": lambda p: write_adapter(p, "light_adapter"),
    "t2i_full_diffusers.safetensors": lambda p: write_adapter(p, "full_adapter", diffusers_names=True),
}


def write_control_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, write in (CONTROLNET_FILES | SDXL_FILES).items():
        write(folder / name)
    save_file({"lora_unet_down.lora_up.weight": torch.zeros(4, 4)}, folder / "a_lora.safetensors")
