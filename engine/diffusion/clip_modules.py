"""CLIP's encoders under ComfyUI's names, and ComfyUI-style weight patches on them.

ComfyUI names a checkpoint's text-encoder weights `clip_l.transformer.text_model.encoder.layers.0.…`
(`clip_g`, `clip_h` for the other encoders); packs use those keys with `get_sd`, `add_patches`,
`comfy.lora.model_lora_keys_clip`. `Transformer` gives an encoder ComfyUI's inner names
(`text_model`, `text_projection`); `clip_models` builds `cond_stage_model` from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from engine.diffusion.tokens import encoder_keys

if TYPE_CHECKING:
    from engine.diffusion.clip import CLIP


class Transformer(torch.nn.Module):
    """ComfyUI's `SDClipModel.transformer`: `text_model` (and `text_projection` for CLIP-G)."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        if hasattr(encoder, "text_model"):
            self.text_model = encoder.text_model
            self.text_projection = encoder.text_projection
        else:
            self.text_model = encoder


def comfy_keys(
    family: str, encoders: tuple[Any, ...], roles: tuple[str, ...] = ()
) -> dict[str, tuple[int, str]]:
    """ComfyUI state-dict key → (encoder index, parameter name in Loom's encoder). `roles` name the
    flow families' encoders; T5-XXL's module is `t5xxl` and its parameters keep T5's own names."""
    keys: dict[str, tuple[int, str]] = {}
    for index, ((key, _, _), encoder) in enumerate(zip(encoder_keys(family, roles), encoders, strict=True)):
        own = key in (
            "t5xxl",
            "qwen3_4b",
            "qwen25_7b",
            "qwen3vl_8b",
            "qwen3vl_4b",
            "gemma2_2b",
            "llama",
        )  # modules named by their key, weights as they are
        module = key if own else f"clip_{key}"
        inner = "" if hasattr(encoder, "text_model") or own else "text_model."
        for name, _ in encoder.named_parameters():
            keys[f"{module}.transformer.{inner}{name}"] = (index, name)
    return keys


def load_encoder_state(family: str, encoders: tuple[Any, ...], sd: dict[str, Any]) -> Any:
    """Load one encoder's transformers-layout weights into the encoder whose width they fit."""
    token_key = next((k for k in sd if k.endswith("embeddings.token_embedding.weight")), None)
    if token_key is None:
        raise ValueError("CLIP.load_sd: no `text_model.embeddings.token_embedding.weight` in the weights")
    width = sd[token_key].shape[-1]
    layers = sum(1 for k in sd if k.endswith(".mlp.fc1.weight"))
    for encoder in reversed(encoders):  # prefer CLIP-G for SDXL when both fit, as ComfyUI does by depth
        inner = getattr(encoder, "text_model", encoder)
        if inner.embeddings.token_embedding.weight.shape[-1] == width and len(inner.encoder.layers) == layers:
            target = Transformer(encoder)
            return target.load_state_dict({_with_text_model(k): v for k, v in sd.items()}, strict=False)
    raise ValueError(
        f"CLIP.load_sd: no text encoder of width {width} with {layers} layers in this {family} CLIP"
    )


def _with_text_model(key: str) -> str:
    if key.startswith(("text_model.", "text_projection")):
        return key
    return "text_model." + key


def with_patches(
    clip: CLIP, patches: dict[Any, Any], strength_patch: float, strength_model: float
) -> tuple[dict[str, tuple[Any, ...]], list[Any]]:
    """`clip.patches` with ComfyUI patch entries added (`(strength_patch, value, strength_model, offset,
    function)` per key, as ModelPatcher.add_patches), and the given keys that matched a weight."""
    keys = comfy_keys(clip.family, clip.encoders, clip.roles)
    out = dict(clip.patches)
    matched: list[Any] = []
    for k, value in patches.items():
        key, offset, function = (
            (k, None, None) if isinstance(k, str) else (k[0], k[1], k[2] if len(k) > 2 else None)
        )
        if key not in keys:
            continue
        out[key] = (*out.get(key, ()), (strength_patch, value, strength_model, offset, function))
        matched.append(k)
    return out, matched


def _identity(weight: Any, **kwargs: Any) -> Any:
    return weight


def key_patches(clip: CLIP) -> dict[str, list[Any]]:
    """ComfyUI key → [(weight, convert function), *patches] for every weight of the encoders."""
    out: dict[str, list[Any]] = {}
    for key, (index, name) in comfy_keys(clip.family, clip.encoders, clip.roles).items():
        out[key] = [(clip.encoders[index].get_parameter(name), _identity), *clip.patches.get(key, ())]
    return out


@contextmanager
def patched_encoders(clip: CLIP, index: int | None = None) -> Iterator[None]:
    """`clip.patches` applied in place to the shared encoders (to encoder `index` only, if given) while
    the block runs, then undone (engine.diffusion.weights, the mechanism MODEL patches use)."""
    from engine.diffusion.weights import patched_parameters

    if not clip.patches:
        yield
        return
    keys = comfy_keys(clip.family, clip.encoders, clip.roles)
    targets = {
        key: clip.encoders[keys[key][0]].get_parameter(keys[key][1])
        for key in clip.patches
        if index is None or keys[key][0] == index
    }
    with patched_parameters(targets, clip.patches):
        yield


class ClipPatcher:
    """What ComfyUI's `CLIP.patcher` answers that Loom can: the module, devices, patches."""

    def __init__(self, clip: CLIP) -> None:
        self.clip = clip
        self.model = clip.cond_stage_model
        self.is_clip = True

    @property
    def load_device(self) -> torch.device:
        from engine.diffusion.devices import manager

        return manager().device

    @property
    def offload_device(self) -> torch.device:
        return torch.device("cpu")

    def add_patches(
        self, patches: dict[Any, Any], strength_patch: float = 1.0, strength_model: float = 1.0
    ) -> list:
        return self.clip.add_patches(patches, strength_patch, strength_model)

    def get_key_patches(self) -> dict[str, list[Any]]:
        return key_patches(self.clip)

    def model_state_dict(self, filter_prefix: str | None = None) -> dict[str, Any]:
        state = self.model.state_dict()
        return {k: v for k, v in state.items() if filter_prefix is None or k.startswith(filter_prefix)}

    def model_size(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def clone(self) -> ClipPatcher:
        return ClipPatcher(self.clip.clone())
