"""Model patches (ComfyUI's MODEL_PATCH, read by ModelPatchLoader from models/model_patches).

Loom reads two kinds and recognises a third:

- DiffSynth's block-wise ControlNets for Qwen-Image (canny, depth, inpaint): `img_in` (a linear layer from
  the packed control latent, 64 channels plus 4 per extra mask channel, to the model's width) and, per
  transformer block, `controlnet_blocks.N.{x_rms,y_rms}.weight` (RMS norms of the image tokens and of the
  control tokens) and `controlnet_blocks.N.{input_proj,output_proj}.{weight,bias}` (linear, GELU, linear).
  After transformer block N the image tokens gain strength × block N of (image tokens, control tokens).
- USO's style projector for Flux (`feature_embedder.*`): three SigLIP layers → style tokens before the
  prompt (engine.diffusion.uso_style, USOStyleReference).
- alibaba-pai's Z-Image Fun ControlNet (`control_all_x_embedder.2-1.*`, `control_layers.N.*`,
  `control_noise_refiner.N.*`): a second stack of Z-Image transformer blocks whose outputs are added to the
  model's image tokens (engine.diffusion.zimage_fun_control).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RMS_EPS = 1e-6
_BLOCK = re.compile(r"controlnet_blocks\.(\d+)\.")


class ModelPatchError(ValueError):
    """A model-patch file Loom cannot use; the message says what it holds."""


@dataclass
class ModelPatch:
    """A loaded model patch: its kind ("qwen_blockwise_controlnet", "zimage_fun_controlnet" or
    "uso_style_projector"), its weights and what its layout says about it."""

    kind: str
    weights: dict[str, Any]
    name: str
    layers: int = 0
    width: int = 0
    extra_channels: int = 0  # channels after the 16 latent ones (Qwen inpaint: 1 mask; Z-Image Fun 2.x: 17)
    layout: Any = None  # a Z-Image Fun ControlNet's FunLayout
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)  # modules built from the weights
    _cast: dict[Any, dict[str, Any]] = field(default_factory=dict, repr=False)

    def cast(self, dtype: Any, device: Any) -> dict[str, Any]:
        """The weights in `dtype` on `device` (kept, so each step does not convert them again)."""
        key = (dtype, device)
        if key not in self._cast:
            self._cast = {key: {k: v.to(device=device, dtype=dtype) for k, v in self.weights.items()}}
        return self._cast[key]


def load_model_patch(path: Path) -> ModelPatch:
    from safetensors.torch import load_file

    if path.suffix.lower() not in (".safetensors", ".sft"):
        raise ModelPatchError(f"{path.name}: Loom reads model patches from .safetensors files")
    return model_patch_from_weights(dict(load_file(str(path))), path.name)


def model_patch_from_weights(weights: dict[str, Any], name: str) -> ModelPatch:
    if "controlnet_blocks.0.y_rms.weight" in weights:
        return _blockwise(weights, name)
    if "feature_embedder.mid_layer_norm.bias" in weights:
        return ModelPatch("uso_style_projector", weights, name)
    if any(key.startswith("control_all_x_embedder.") for key in weights):
        from engine.diffusion.zimage_fun_control import fun_layout

        layout = fun_layout(weights, name)
        extra = layout.in_channels - 16
        return ModelPatch("zimage_fun_controlnet", weights, name, layout.layers, layout.width, extra, layout)
    sample = ", ".join(sorted(weights)[:4])
    raise ModelPatchError(
        f"{name}: not a model patch Loom knows (a Qwen-Image DiffSynth ControlNet has "
        f"`controlnet_blocks.N.*` and `img_in.*`; a Z-Image Fun ControlNet `control_all_x_embedder.2-1.*`; "
        f"USO's projector `feature_embedder.*`); keys begin {sample}"
    )


def _blockwise(weights: dict[str, Any], name: str) -> ModelPatch:
    layers = 1 + max(int(m.group(1)) for key in weights if (m := _BLOCK.match(key)))
    width, inputs = weights["img_in.weight"].shape
    for index in range(layers):
        if f"controlnet_blocks.{index}.input_proj.weight" not in weights:
            raise ModelPatchError(f"{name}: controlnet block {index} is missing")
    if inputs < 64 or (inputs - 64) % 4:
        raise ModelPatchError(f"{name}: img_in takes {inputs} inputs; expected 64 plus 4 per mask channel")
    return ModelPatch("qwen_blockwise_controlnet", weights, name, layers, int(width), (inputs - 64) // 4)


def control_block(weights: dict[str, Any], index: int, img: Any, control: Any) -> Any:
    """Block `index` of the block-wise ControlNet: linear(GELU(linear(rms(img) + rms(control))))."""
    import torch.nn.functional as F

    p = f"controlnet_blocks.{index}."
    width = img.shape[-1]
    x = F.rms_norm(img, (width,), weights[p + "x_rms.weight"], RMS_EPS)
    y = F.rms_norm(control, (width,), weights[p + "y_rms.weight"], RMS_EPS)
    hidden = F.linear(x + y, weights[p + "input_proj.weight"], weights[p + "input_proj.bias"])
    return F.linear(F.gelu(hidden), weights[p + "output_proj.weight"], weights[p + "output_proj.bias"])


class SharedByClones:
    """A patch that a ModelPatcher's clones share rather than copy. ModelPatcher.clone deep-copies
    model_options, where ComfyUI's clone copies only the dicts and lists: the patch (its weights, its VAE)
    stays one object, as in ComfyUI."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self


class DiffSynthControl(SharedByClones):
    """The "double_block" patch QwenImageDiffsynthControlnet puts on a Qwen-Image model: the control image
    is VAE-encoded at the size of the latent being sampled (scaled to it first, area resampling with a
    centre crop), normalised as Qwen-Image's latents are, joined by the inpaint mask channels (1 where the
    image is kept; all ones without a mask), packed into 2×2 tokens and projected by `img_in`; after each
    transformer block the first (generated-image) tokens gain strength × that block's control."""

    def __init__(self, patch: ModelPatch, vae: Any, image: Any, strength: float, keep: Any = None) -> None:
        self.patch, self.vae, self.image, self.strength, self.keep = patch, vae, image, strength, keep
        self._tokens: tuple[tuple[int, int], Any] | None = None

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        img, index = args["img"], args["block_index"]
        control = self.tokens(args["x"]).to(device=img.device, dtype=img.dtype)
        count = control.shape[1]
        if control.shape[0] not in (1, img.shape[0]):
            control = control.repeat(-(-img.shape[0] // control.shape[0]), 1, 1)[: img.shape[0]]
        weights = self.patch.cast(img.dtype, img.device)
        added = control_block(weights, index, img[:, :count], control) * self.strength
        import torch

        return {**args, "img": torch.cat([img[:, :count] + added, img[:, count:]], dim=1)}

    def tokens(self, x: Any) -> Any:
        """The projected control tokens for a latent shaped like `x` (computed once per size)."""
        ratio = self.vae.spacial_compression_encode()
        size = (int(x.shape[-2]) * ratio, int(x.shape[-1]) * ratio)
        if self._tokens is None or self._tokens[0] != size:
            self._tokens = (size, self._encode(size))
        return self._tokens[1]

    def _encode(self, size: tuple[int, int]) -> Any:
        import torch
        import torch.nn.functional as F

        from engine.diffusion.flow_tokens import pack
        from engine.diffusion.latent_formats_flow import Wan21
        from nodes.image.basic import upscale

        height, width = size
        pixels = upscale(self.image.movedim(-1, 1), width, height, "area", "center").movedim(1, -1)
        latent = Wan21().process_in(self.vae.encode(pixels[..., :3]).float())
        if self.patch.extra_channels:
            rows, cols = latent.shape[-2:]
            if self.keep is None:
                keep = torch.ones_like(latent[:, :1])
            else:
                keep = upscale(self.keep.float().mean(dim=1, keepdim=True), cols, rows, "bilinear")
                keep = keep.to(latent.device)
                if keep.shape[0] != latent.shape[0]:
                    keep = keep.repeat(-(-latent.shape[0] // keep.shape[0]), 1, 1, 1)[: latent.shape[0]]
            latent = torch.cat([latent, keep.repeat(1, self.patch.extra_channels, 1, 1)], dim=1)
        packed, _, _ = pack(latent)
        weights = self.patch.weights  # in the file's dtype; the projection runs in float32
        return F.linear(packed, weights["img_in.weight"].float(), weights["img_in.bias"].float())

    def to(self, device: Any) -> DiffSynthControl:
        import torch

        if self._tokens is not None and isinstance(device, torch.device):
            self._tokens = (self._tokens[0], self._tokens[1].to(device))
        return self

    def models(self) -> list[Any]:
        return []
