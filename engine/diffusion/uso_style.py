"""USO's style reference for Flux ("USO: Unified Style and Subject-Driven Generation via Disentangled and
Reward Learning", ByteDance 2025), as newer ComfyUI's USOStyleReference applies it.

The projector file (`uso-flux1-projector-v1.safetensors`, keys `feature_embedder.*`) reads three SigLIP
layers of the style image — the 20th from last ("low"), the 11th from last ("mid") and the penultimate
("high") — and turns each into style tokens: a linear layer across the token axis (SigLIP's 729 patch
tokens → 64) with SiLU, a layer norm and a projection to Flux's width. The 3 × 64 tokens, high first, are
prepended to Flux's embedded text tokens with zero position ids by a "post_input" patch
(engine.diffusion.dit_patches.post_input_patches), at every model call.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.batching import repeat_to_batch
from engine.diffusion.model_patch_files import ModelPatch, ModelPatchError, SharedByClones

LEVELS = ("high", "mid", "low")  # the order of the tokens in the prompt
LAYER_EPS = 1e-5
_PREFIX = "feature_embedder."


def check_projector(patch: ModelPatch) -> tuple[int, int, int]:
    """(SigLIP tokens, SigLIP width, Flux width) the projector reads and writes; a clear error if its
    weights are incomplete or disagree."""
    weights = patch.weights
    shapes = set()
    for level in LEVELS:
        p = f"{_PREFIX}{level}_"
        names = (
            p + "embedding_linear.0.weight",
            p + "embedding_linear.0.bias",
            p + "layer_norm.weight",
            p + "layer_norm.bias",
            p + "projection.weight",
            p + "projection.bias",
        )
        missing = [n for n in names if n not in weights]
        if missing:
            raise ModelPatchError(f"{patch.name}: USO projector weights missing, e.g. {missing[:2]}")
        tokens = int(weights[names[0]].shape[1])
        width, dims = (int(n) for n in weights[names[4]].shape)
        shapes.add((tokens, dims, width))
    if len(shapes) != 1:
        raise ModelPatchError(f"{patch.name}: the USO projector's three levels disagree in shape: {shapes}")
    return shapes.pop()


def siglip_layers(clip_vision_output: Any, node: str) -> Any:
    """The stacked (20th from last, 11th from last, penultimate) SigLIP hidden states [3, B, T, D]."""
    import torch

    hidden = getattr(clip_vision_output, "all_hidden_states", None) if clip_vision_output else None
    if hidden is None:
        raise ValueError(
            f"{node}: input 'clip_vision_output' must come from a SigLIP vision encoder "
            "(sigclip_vision_patch14_384) through CLIPVisionEncode: it has no all_hidden_states"
        )
    if hidden.shape[1] < 20:
        raise ValueError(
            f"{node}: input 'clip_vision_output' has {hidden.shape[1]} layers; USO reads the 20th from last"
        )
    return torch.stack((hidden[:, -20], hidden[:, -11], clip_vision_output.penultimate_hidden_states))


def project(patch: ModelPatch, layers: Any, dtype: Any, device: Any) -> Any:
    """The style tokens [B, 3 × style tokens, Flux width] for stacked SigLIP layers (see `siglip_layers`)."""
    import torch
    import torch.nn.functional as F

    weights = patch.cast(dtype, device)
    out = []
    for level, hidden in zip(LEVELS, (layers[2], layers[1], layers[0]), strict=True):
        p = f"{_PREFIX}{level}_"
        x = hidden.to(device=device, dtype=dtype).transpose(1, 2)
        x = F.silu(
            F.linear(x, weights[p + "embedding_linear.0.weight"], weights[p + "embedding_linear.0.bias"])
        )
        x = x.transpose(1, 2)
        x = F.layer_norm(
            x, x.shape[-1:], weights[p + "layer_norm.weight"], weights[p + "layer_norm.bias"], LAYER_EPS
        )
        out.append(F.linear(x, weights[p + "projection.weight"], weights[p + "projection.bias"]))
    return torch.cat(out, dim=1)


class UsoStylePatch(SharedByClones):
    """The "post_input" patch USOStyleReference puts on a Flux model: the style tokens go before the text
    tokens, with zero ids."""

    def __init__(self, patch: ModelPatch, layers: Any) -> None:
        self.patch = patch
        self.layers = layers

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        import torch

        txt, txt_ids = args["txt"], args["txt_ids"]
        style = project(self.patch, self.layers, txt.dtype, txt.device)
        style = repeat_to_batch(style, txt.shape[0])  # one style image for a batch, as torch.cat needs
        zeros = torch.zeros((txt.shape[0], style.shape[1], 3), dtype=txt_ids.dtype, device=txt_ids.device)
        return {**args, "txt": torch.cat([style, txt], dim=1), "txt_ids": torch.cat([zeros, txt_ids], dim=1)}

    def to(self, device: Any) -> UsoStylePatch:
        import torch

        if isinstance(device, torch.device):
            self.layers = self.layers.to(device)
        return self

    def models(self) -> list[Any]:
        return []
