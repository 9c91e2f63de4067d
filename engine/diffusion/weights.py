"""Weight patches in ComfyUI's format, on a diffusers UNet addressed by ComfyUI's key names.

ComfyUI names the UNet's weights as in the original checkpoints (`diffusion_model.input_blocks.1.1.
proj_in.weight`); a patch list per key holds `(strength_patch, value, strength_model, offset,
function)` tuples, where value is `(diff,)`, `("diff", (diff,))`, `("set", (weight,))`,
`("lora", (up, down, alpha, mid, dora_scale, reshape))`, a list from `get_key_patches` (another
model's weight with its own patches: model merging), or an adapter object with `calculate_weight`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

PREFIX = "diffusion_model."
_names: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


class WeightPatchError(ValueError):
    """A weight patch whose shape or type does not fit the weight it targets."""


def comfy_names(unet: Any) -> dict[str, str]:
    """ComfyUI key (`diffusion_model.…`) → diffusers parameter name, for every weight of `unet`."""
    if unet not in _names and not hasattr(unet.config, "block_out_channels"):
        # Transformer families (SD3, Flux) are patched under diffusers' parameter names for now.
        _names[unet] = {PREFIX + name: name for name, _ in unet.named_parameters()}
    if unet not in _names:
        from engine.models.keymap import unet_to_original

        own = {name: name for name, _ in unet.named_parameters()}
        original = unet_to_original(own, unet.config)
        _names[unet] = {PREFIX + key: str(name) for key, name in original.items()}
    return _names[unet]


def calculate_weight(patches: list[Any], weight: Any, key: str) -> Any:
    """The weight after applying `patches` in order (ComfyUI's calculate_weight semantics)."""
    for strength, value, strength_model, offset, function in (_padded(p) for p in patches):
        target = weight if offset is None else weight.narrow(offset[0], offset[1], offset[2])
        fn = function if function is not None else (lambda a: a)
        if strength_model != 1.0:
            target *= strength_model
        if isinstance(value, list):  # another model's weight (model merging)
            if strength == 0:
                continue
            if tuple(value[0][0].shape) != tuple(target.shape):
                # ComfyUI merges what fits and leaves the rest (an SD2 model into an SD1 one).
                logging.warning(
                    "%s: shape %s does not match %s; weight not merged",
                    key,
                    tuple(value[0][0].shape),
                    tuple(target.shape),
                )
                continue
            value = (calculate_weight(value[1:], _base_weight(value[0], target), key),)
        if hasattr(value, "calculate_weight"):
            target.copy_(value.calculate_weight(target, key, strength, strength_model, offset, fn))
            continue
        kind, data = ("diff", value) if len(value) == 1 else (value[0], value[1])
        if kind == "diff":
            _add_diff(target, data[0], strength, fn, key)
        elif kind == "set":
            target.copy_(data[0].to(target))
        elif kind == "lora":
            _add_lora(target, data, strength, fn)
        elif kind == "model_as_lora":
            target += fn(strength * (data[0] - data[1]).to(target))
        else:
            raise WeightPatchError(f"{key}: unsupported weight patch type {kind!r}")
    return weight


def _base_weight(entry: tuple[Any, ...], like: Any) -> Any:
    """The first entry of a `get_key_patches` list, `(weight[, convert_func])`, as a float32 copy on
    the device of the weight it patches (the other model's weight is never changed)."""
    weight = entry[0].to(like.device, torch.float32, copy=True)
    return entry[1](weight, inplace=True) if len(entry) > 1 and entry[1] is not None else weight


def _padded(patch: Any) -> tuple[Any, Any, float, Any, Any]:
    items = tuple(patch) + (1.0, None, None)[max(0, len(patch) - 2) :]
    return items[0], items[1], items[2], items[3], items[4]


def _add_diff(weight: Any, diff: Any, strength: float, fn: Any, key: str) -> None:
    if strength == 0:
        return
    if diff.shape != weight.shape:
        raise WeightPatchError(
            f"{key}: patch shape {tuple(diff.shape)} does not match weight {tuple(weight.shape)}"
        )
    weight += fn(strength * diff.to(weight.device, torch.float32)).to(weight.dtype)


def _add_lora(weight: Any, data: tuple[Any, ...], strength: float, fn: Any) -> None:
    up, down, alpha = data[0], data[1], data[2]
    if len(data) > 3 and data[3] is not None:
        raise WeightPatchError("LoCon mid weights (lora 'mid') are not supported")
    if len(data) > 4 and data[4] is not None:
        raise WeightPatchError("DoRA weights (lora 'dora_scale') are not supported")
    up = up.to(weight.device, torch.float32)
    down = down.to(weight.device, torch.float32)
    scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
    diff = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
    weight += fn((strength * scale) * diff).to(weight.dtype)


@contextmanager
def patched_weights(unet: Any, patches: dict[str, list[Any]]) -> Iterator[None]:
    """Apply `patches` (ComfyUI keys) to `unet`'s parameters in place; restore them on exit."""
    names = comfy_names(unet)
    with patched_parameters({key: unet.get_parameter(names[key]) for key in patches}, patches):
        yield


@contextmanager
def patched_parameters(parameters: Mapping[str, Any], patches: Mapping[str, Sequence[Any]]) -> Iterator[None]:
    """Apply `patches[key]` to `parameters[key]` in place (in float32, cast back); restore on exit.

    Each key's new weight is worked out before it is written, so a patch list that holds the same
    parameter (a model merged with itself) reads the original value."""
    saved: list[tuple[Any, Any]] = []
    try:
        with torch.no_grad():
            for key, weight in parameters.items():
                saved.append((weight, weight.detach().clone()))
                work = weight.detach().to(torch.float32, copy=True)
                weight.copy_(calculate_weight(list(patches[key]), work, key).to(weight.dtype))
        yield
    finally:
        with torch.no_grad():
            for weight, original in reversed(saved):
                weight.copy_(original)
