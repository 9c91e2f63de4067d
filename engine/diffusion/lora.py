"""LoRA files → weight patches for a UNet and text encoders.

Understands the common layouts: kohya / A1111 (`lora_unet_*`, `lora_te_*`, `lora_te1_*`, `lora_te2_*`
with `lora_down` / `lora_up` / `alpha`, UNet names in either the diffusers or the original LDM
layout) and diffusers / PEFT (`unet.*`, `text_encoder*.*` with `lora_A` / `lora_B` or `lora.down` /
`lora.up`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PARTS = {
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".lora.down.weight": "down",
    ".lora.up.weight": "up",
    ".alpha": "alpha",
}


class LoraError(ValueError):
    """A LoRA file that fits none of the model's layers."""


def unet_aliases(unet: Any) -> dict[str, tuple[int, str]]:
    from engine.models.keymap import unet_to_original

    # The key map only renames, so mapping names to themselves yields diffusers name → original name.
    weights: dict[str, Any] = {f"{name}.weight": f"{name}.weight" for name, module in _patchable(unet)}
    original: dict[str, str] = {str(v): k for k, v in unet_to_original(weights, unet.config).items()}
    aliases: dict[str, tuple[int, str]] = {}
    for key in weights:
        module = key.removesuffix(".weight")
        for alias in (
            "lora_unet_" + module.replace(".", "_"),
            "lora_unet_" + original[key].removesuffix(".weight").replace(".", "_"),
            "unet." + module,
        ):
            aliases[alias] = (0, key)
    return aliases


def text_aliases(encoders: tuple[Any, ...]) -> dict[str, tuple[int, str]]:
    aliases: dict[str, tuple[int, str]] = {}
    for index, encoder in enumerate(encoders):
        kohya = ["lora_te_"] if len(encoders) == 1 else []
        kohya.append(f"lora_te{index + 1}_")
        peft = "text_encoder." if index == 0 else f"text_encoder_{index + 1}."
        for name, _ in _patchable(encoder):
            canonical = "text_model." + name.removeprefix("text_model.")
            for prefix in kohya:
                aliases[prefix + canonical.replace(".", "_")] = (index, name + ".weight")
            aliases[peft + canonical] = (index, name + ".weight")
    return aliases


def _patchable(module: Any) -> list[tuple[str, Any]]:
    import torch

    return [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.weight is not None
    ]


def _pairs(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """LoRA layers of a file: base name → its down, up and alpha entries."""
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        for suffix, part in _PARTS.items():
            if key.endswith(suffix):
                pairs.setdefault(key[: -len(suffix)], {})[part] = value
                break
    return pairs


def _checked(base: str, parts: dict[str, Any]) -> tuple[Any, Any, float | None]:
    if "down" not in parts or "up" not in parts:
        raise LoraError(f"LoRA layer {base!r} lacks its {'down' if 'down' not in parts else 'up'} weight")
    alpha = float(parts["alpha"]) if "alpha" in parts else None
    return parts["up"], parts["down"], alpha


def clip_lora_patches(state: Mapping[str, Any], clip: Any) -> tuple[dict[str, Any], set[str]]:
    """The text-encoder layers of a LoRA file as CLIP weight patches (ComfyUI's `("lora", ...)` format,
    keyed by ComfyUI's `clip_l.transformer.…` names), and the file's layers that are not text layers."""
    from engine.diffusion.clip_modules import comfy_keys

    to_comfy = {target: key for key, target in comfy_keys(clip.family, clip.encoders, clip.roles).items()}
    aliases = text_aliases(clip.encoders)
    patches: dict[str, Any] = {}
    unknown = set()
    for base, parts in _pairs(state).items():
        if base not in aliases or aliases[base] not in to_comfy:
            unknown.add(base)
            continue
        up, down, alpha = _checked(base, parts)
        patches[to_comfy[aliases[base]]] = ("lora", (up, down, alpha, None, None, None))
    return patches, unknown


def model_lora_patches(state: Mapping[str, Any], unet: Any) -> tuple[dict[str, Any], set[str]]:
    """The UNet layers of a LoRA file as ModelPatcher weight patches (ComfyUI's `("lora", ...)` format,
    keyed by ComfyUI's state-dict names), and the file's layers that are not UNet layers."""
    from engine.diffusion.weights import comfy_names

    if not hasattr(unet.config, "block_out_channels"):  # a flow transformer (SD3, Flux, …)
        from engine.diffusion.lora_flow import flow_lora_patches

        return flow_lora_patches(state, unet)
    to_comfy = {name: key for key, name in comfy_names(unet).items()}
    aliases = unet_aliases(unet)
    patches: dict[str, Any] = {}
    unknown = set()
    for base, parts in _pairs(state).items():
        if base not in aliases:
            unknown.add(base)
            continue
        up, down, alpha = _checked(base, parts)
        patches[to_comfy[aliases[base][1]]] = ("lora", (up, down, alpha, None, None, None))
    return patches, unknown
