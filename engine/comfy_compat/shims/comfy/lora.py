"""ComfyUI's comfy.lora: map a LoRA file's layer names onto model weights, and read its patches.

`model_lora_keys_clip(clip.cond_stage_model)` and `model_lora_keys_unet(model)` return
{LoRA layer name: weight key}, with weight keys in ComfyUI's naming (`clip_l.transformer.text_model.…`,
`diffusion_model.<original UNet key>`). `load_lora(lora, key_map)` returns {weight key: patch} with
each patch in ComfyUI's tuple form: ("lora", (up, down, alpha, mid, dora_scale)), ("diff", (w,)) or
("set", (w,)). Loom's CLIP applies LoRA patches (`CLIP.add_patches`); LoHa, LoKr and other adapter
types are reported as not loaded.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("loom.lora")

LORA_CLIP_MAP = {
    "mlp.fc1": "mlp_fc1",
    "mlp.fc2": "mlp_fc2",
    "self_attn.k_proj": "self_attn_k_proj",
    "self_attn.q_proj": "self_attn_q_proj",
    "self_attn.v_proj": "self_attn_v_proj",
    "self_attn.out_proj": "self_attn_out_proj",
}
_UP = (".lora_up.weight", ".lora_B.weight", ".lora.up.weight", "_lora.up.weight")
_DOWN = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight")


def model_lora_keys_clip(model: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """LoRA names (kohya `lora_te*_`, diffusers `text_encoder*.`, generic `text_encoders.`) → CLIP keys."""
    key_map = {} if key_map is None else key_map
    keys = set(model.state_dict())
    for key in keys:
        if key.endswith(".weight"):
            key_map[f"text_encoders.{key[: -len('.weight')]}"] = key
    has_l = any(k.startswith("clip_l.") for k in keys)
    for key in sorted(keys):
        encoder, _, rest = key.partition(".transformer.text_model.encoder.layers.")
        if not rest or not rest.endswith(".weight"):
            continue
        block, _, layer = rest[: -len(".weight")].partition(".")
        if layer not in LORA_CLIP_MAP:
            continue
        kohya = f"text_model_encoder_layers_{block}_{LORA_CLIP_MAP[layer]}"
        diffusers = f"text_model.encoder.layers.{block}.{layer}"
        if encoder in ("clip_l", "clip_h") or (encoder == "clip_g" and not has_l):
            names = [f"lora_te_{kohya}", f"text_encoder.{diffusers}"]
            names += [f"lora_te1_{kohya}"] if encoder != "clip_g" else [f"lora_prior_te_{kohya}"]
        elif encoder == "clip_g":
            names = [f"lora_te2_{kohya}", f"text_encoder_2.{diffusers}"]
        else:
            continue
        for name in names:
            key_map[name] = key
    return key_map


def model_lora_keys_unet(model: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """LoRA names (kohya `lora_unet_` in both layouts, diffusers `unet.`/bare, generic) → UNet keys
    `diffusion_model.<original-layout key>`. `model` is the diffusers UNet or holds it as
    `diffusion_model`, `unet` or `model`."""
    from engine.models.keymap import unet_to_original

    key_map = {} if key_map is None else key_map
    unet = _find_unet(model)
    diffusers_keys = {name: name for name in unet.state_dict()}
    original = unet_to_original(diffusers_keys, unet.config)  # original key → diffusers key
    for old, new in original.items():
        target = f"diffusion_model.{old}"
        if not old.endswith(".weight"):
            key_map[target] = target
            continue
        key_map[f"lora_unet_{old[: -len('.weight')].replace('.', '_')}"] = target
        key_map[target[: -len(".weight")]] = target
        module = str(new)[: -len(".weight")]
        key_map[f"lora_unet_{module.replace('.', '_')}"] = target
        key_map[f"lycoris_{module.replace('.', '_')}"] = target
        diffusers = module.replace(".to_", ".processor.to_")
        if diffusers.endswith(".to_out.0"):
            diffusers = diffusers[: -len(".0")]
        for prefix in ("", "unet."):
            key_map[prefix + diffusers] = target
    return key_map


def _find_unet(model: Any) -> Any:
    for candidate in (model, *(getattr(model, a, None) for a in ("diffusion_model", "unet", "model"))):
        if candidate is not None and hasattr(candidate, "config") and hasattr(candidate, "down_blocks"):
            return candidate
    inner = getattr(model, "model", None)
    if inner is not None and inner is not model:
        return _find_unet(inner)
    raise TypeError(f"model_lora_keys_unet: no diffusers UNet found in {type(model).__name__}")


def load_lora(lora: dict[str, Any], to_load: dict[str, str], log_missing: bool = True) -> dict[str, Any]:
    """{weight key: patch} for the layers of `to_load` the LoRA file has."""
    patches: dict[str, Any] = {}
    loaded: set[str] = set()
    for name, target in to_load.items():
        alpha_key, dora_key = f"{name}.alpha", f"{name}.dora_scale"
        alpha = float(lora[alpha_key].item()) if alpha_key in lora else None
        dora = lora.get(dora_key)
        up = next((s for s in _UP if name + s in lora), None)
        down = next((s for s in _DOWN if name + s in lora), None)
        if up is not None and down is not None:
            mid_key = f"{name}.lora_mid.weight"
            mid = lora.get(mid_key)
            patches[target] = ("lora", (lora[name + up], lora[name + down], alpha, mid, dora))
            loaded.update({name + up, name + down, mid_key, alpha_key, dora_key} & set(lora))
        for suffix, kind in ((".diff", "diff"), (".set_weight", "set")):
            if name + suffix in lora:
                patches[target] = (kind, (lora[name + suffix],))
                loaded.add(name + suffix)
        if name + ".diff_b" in lora:
            patches[f"{target.removesuffix('.weight')}.bias"] = ("diff", (lora[name + ".diff_b"],))
            loaded.add(name + ".diff_b")
    if log_missing:
        for key in lora:
            if key not in loaded:
                log.warning("lora key not loaded: %s", key)
    return patches


def calculate_weight(
    patches: list[tuple], weight: Any, key: str, intermediate_dtype: Any = None, original_weights: Any = None
) -> Any:
    """`weight` with ComfyUI patch entries (strength, patch, strength_model, offset, function) applied in
    order, by the engine's own calculator (the one LoRAs, merges and packs' add_patches go through):
    `(w,)`/`("diff", (w,))`, `("set", (w,))`, `("lora", ...)`, `("model_as_lora", ...)`, another model's
    `get_key_patches` list, or an adapter object with `calculate_weight`."""
    from engine.diffusion.weights import calculate_weight as engine_calculate_weight

    return engine_calculate_weight(patches, weight, key)
