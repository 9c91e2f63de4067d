"""alibaba-pai's Z-Image Fun ControlNet (Z-Image-Turbo-Fun-Controlnet-Union 1.0, 2.0, 2.1 and its lite
variant), run as newer ComfyUI runs it (`ZImageControlPatch` in comfy_extras/nodes_model_patch.py over
`ZImage_Control` in comfy/ldm/lumina/controlnet.py, called from NextDiT's "noise_refiner" and "double_block"
patch points).

The file is diffusers' `ZImageControlNetModel` under its own names: `control_all_x_embedder.2-1` (2×2 patches
of the control latent to the model's width), `control_layers.N` (Z-Image transformer blocks, block 0 with a
`before_proj`, each with an `after_proj`) and two `control_noise_refiner.N` blocks — plain Z-Image blocks in
1.0, control blocks with the two projections in 2.x. Loom builds that diffusers module from the file and
drives its blocks the ComfyUI way:

- The control latent is the control image (scaled to the sampled latent's pixel size, area resampling with a
  centre crop) VAE-encoded and normalised as Flux latents. Files with 33 input channels (2.x) add the
  inpaint mask channel (1 where the image is kept, nearest-resampled; zeros without a mask) and the encoded
  inpaint image (mid grey without one, and grey where the mask repaints); without a control image the
  control part is the encoded mid-grey image.
- Its tokens (`control_all_x_embedder`) form a stream of their own that attends only to itself, at the
  image tokens' rotary positions, modulated by the model's timestep embedding.
- 2.1 and lite (refiner control): after main noise-refiner layer i the image tokens gain strength × the
  skip of control refiner block i (block 0 adds `before_proj(control)` + the refiner's input tokens).
  2.0 (its refiner `after_proj` is all zeros, "broken" in ComfyUI) takes those two hints from the control
  layers instead. 1.0 runs its plain refiner blocks over the control tokens before the main layers.
- Control layer k follows main layer k × round(30 / control layers) (30 is Z-Image's depth; 15 layers: every
  second one) and adds strength × its skip to the image tokens; layer 0 adds the main layers' input image
  tokens to the control stream first. Layers past the model's depth never run.

diffusers' own pipeline differs (see docs/models.md, "Model patches"): its control layers attend to the
caption tokens too, its hints reach caption tokens, and its transformer never receives the refiner hints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.diffusion.batching import repeat_to_batch
from engine.diffusion.model_patch_files import SharedByClones

ZIMAGE_DEPTH = (
    30  # ComfyUI spaces the control layers over Z-Image's 30 main layers, whatever the model's depth
)
LATENT_CHANNELS = 16
INPAINT_CHANNELS = 2 * LATENT_CHANNELS + 1  # control latent, keep mask, inpaint latent
_REFINER = re.compile(r"control_noise_refiner\.(\d+)\.")
_LAYER = re.compile(r"control_layers\.(\d+)\.")


@dataclass(frozen=True)
class FunLayout:
    """What a Z-Image Fun ControlNet file's keys and shapes say about it."""

    layers: int
    width: int
    head_dim: int
    in_channels: int
    refiner_blocks: int
    refiner: str  # "plain" (1.0), "control" (2.1, lite) or "broken" (2.0: zero refiner projections)

    @property
    def every(self) -> int:
        """Main layers per control layer."""
        return max(1, round(ZIMAGE_DEPTH / self.layers))


def fun_layout(weights: dict[str, Any], name: str) -> FunLayout:
    """The layout of a Z-Image Fun ControlNet, or a ModelPatchError naming what is missing."""
    from engine.diffusion.model_patch_files import ModelPatchError

    embedder = weights.get("control_all_x_embedder.2-1.weight")
    layers = {int(m.group(1)) for key in weights if (m := _LAYER.match(key))}
    refiners = {int(m.group(1)) for key in weights if (m := _REFINER.match(key))}
    if embedder is None or not layers or layers != set(range(len(layers))):
        raise ModelPatchError(
            f"{name}: a Z-Image Fun ControlNet needs `control_all_x_embedder.2-1` and control_layers 0..N; "
            f"found {len(layers)} control layers"
        )
    width, features = (int(n) for n in embedder.shape)
    in_channels = features // 4
    if features % 4 or in_channels not in (LATENT_CHANNELS, INPAINT_CHANNELS):
        raise ModelPatchError(
            f"{name}: control_all_x_embedder takes {features} inputs; expected 4 × 16 (control latent) "
            f"or 4 × 33 (control latent, mask, inpaint latent)"
        )
    for key in ("control_layers.0.before_proj.weight", "control_layers.0.attention.norm_q.weight"):
        if key not in weights:
            raise ModelPatchError(f"{name}: `{key}` is missing")
    refiner = "plain"
    if "control_noise_refiner.0.after_proj.weight" in weights:
        refiner = "control"
        if not bool(weights["control_noise_refiner.0.after_proj.weight"].count_nonzero()):
            refiner = "broken"
    elif in_channels == INPAINT_CHANNELS:
        refiner = "broken"  # 2.0 saved without the refiner projections (diffusers drops them too)
    head_dim = int(weights["control_layers.0.attention.norm_q.weight"].shape[0])
    return FunLayout(len(layers), width, head_dim, in_channels, len(refiners), refiner)


def control_net(layout: FunLayout, weights: dict[str, Any], dtype: Any, device: Any) -> Any:
    """diffusers' ZImageControlNetModel holding the file's weights, in `dtype` on `device`."""
    import torch
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    mode = {"plain": None, "control": "control_noise_refiner", "broken": "control_layers"}[layout.refiner]
    heads = layout.width // layout.head_dim
    with torch.device("meta"):
        net = ZImageControlNetModel(
            control_layers_places=list(range(layout.layers)),
            control_refiner_layers_places=list(range(layout.refiner_blocks)),
            control_in_dim=layout.in_channels,
            add_control_noise_refiner=mode,
            dim=layout.width,
            n_refiner_layers=layout.refiner_blocks,
            n_heads=heads,
            n_kv_heads=heads,
        )
    own = {
        key: value.to(device=device, dtype=dtype)
        for key, value in weights.items()
        if mode != "control_layers" or not key.startswith("control_noise_refiner.")
    }
    net.load_state_dict(own, strict=True, assign=True)
    return net.eval()


def control_tokens(latent: Any) -> Any:
    """[B, C, H, W] → [B, (H/2)(W/2), 4C] in Z-Image's patch order (row, column; then 2×2 offset, channel)."""
    from engine.diffusion.flow_tokens import pad_to_patches

    padded = pad_to_patches(latent, 2)
    batch, channels, height, width = padded.shape
    tokens = padded.reshape(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 3, 5, 1)
    return tokens.reshape(batch, (height // 2) * (width // 2), 4 * channels)


def run_control_block(block: Any, stream: Any, image: Any, pe: Any, vec: Any) -> tuple[Any, Any]:
    """One diffusers ZImageControlTransformerBlock on the control stream: (its skip, the new stream). The
    block keeps its outputs stacked; a single stream goes in as a stack of one."""
    out = block(stream if block.block_id == 0 else stream.unsqueeze(0), image, None, pe, vec)
    return out[-2], out[-1]


class ZImageFunControl(SharedByClones):
    """The patch QwenImageDiffsynthControlnet / ZImageFunControlnet put on a Z-Image model, at both the
    "noise_refiner" and the "double_block" patch points; one control stream per model call."""

    def __init__(
        self,
        patch: Any,
        vae: Any,
        image: Any,
        strength: float,
        inpaint_image: Any = None,
        keep: Any = None,
    ) -> None:
        self.patch, self.vae, self.image, self.strength = patch, vae, image, strength
        self.inpaint_image, self.keep = inpaint_image, keep
        self.layout: FunLayout = patch.layout
        self._latent: tuple[tuple[int, int], Any] | None = None
        self._stream: Any = None
        self._next = 0  # the next control layer to run in this call
        self._refined = False  # the refiner stage of this call has started the stream

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("block_type") == "noise_refiner":
            return self._refiner_stage(args)
        return self._main_stage(args)

    def _refiner_stage(self, args: dict[str, Any]) -> dict[str, Any]:
        index, img = args["block_index"], args["img"]
        if index == 0:
            self._start(args)
            self._refined = True
        net, count = self._net(img), self._stream.shape[1]
        block_args = (args["img_input"][:, :count], args["pe"][:, :count], args["vec"])
        hint = None
        if self.layout.refiner == "control" and index < len(net.control_noise_refiner):
            hint, self._stream = run_control_block(
                net.control_noise_refiner[index], self._stream, *block_args
            )
        elif self.layout.refiner == "broken":
            # ComfyUI's reading of 2.0: hint 0 from control layer 0, hint 1 from layer 1 after layers 1..N.
            for block in net.control_layers[:1] if index == 0 else net.control_layers[1:]:
                skip, self._stream = run_control_block(block, self._stream, *block_args)
                hint = skip if hint is None else hint
        if hint is None:
            return args
        return {**args, "img": _added(img, hint, self.strength)}

    def _main_stage(self, args: dict[str, Any]) -> dict[str, Any]:
        index, img = args["block_index"], args["img"]
        if index % self.layout.every or index // self.layout.every >= self.layout.layers:
            return args
        if index == 0:
            if not self._refined:
                self._start(args)
            self._refined = False
        target = index // self.layout.every
        net, count = self._net(img), self._stream.shape[1]
        hint = None
        while self._next <= target:
            block = net.control_layers[self._next]
            hint, self._stream = run_control_block(
                block, self._stream, args["img_input"][:, :count], args["pe"][:, :count], args["vec"]
            )
            self._next += 1
        if hint is None:
            return args
        return {**args, "img": _added(img, hint, self.strength)}

    def _start(self, args: dict[str, Any]) -> None:
        """A new call: the embedded control tokens, through 1.0's plain refiner blocks."""
        img = args["img"]
        net = self._net(img)
        latent = self.latent(args["x"]).to(device=img.device, dtype=img.dtype)
        stream = net.control_all_x_embedder["2-1"](repeat_to_batch(control_tokens(latent), img.shape[0]))
        if self.layout.refiner == "plain":
            count = stream.shape[1]
            for block in net.control_noise_refiner:
                stream = block(stream, None, args["pe"][:, :count], args["vec"])
        self._stream, self._next = stream, 0

    def _net(self, img: Any) -> Any:
        key = ("control_net", img.dtype, img.device)
        if key not in self.patch.cache:
            self.patch.cache.clear()
            self.patch.cache[key] = control_net(self.layout, self.patch.weights, img.dtype, img.device)
        return self.patch.cache[key]

    def latent(self, x: Any) -> Any:
        """The control latent for a latent shaped like `x` (encoded once per size)."""
        ratio = self.vae.spacial_compression_encode()
        size = (int(x.shape[-2]) * ratio, int(x.shape[-1]) * ratio)
        if self._latent is None or self._latent[0] != size:
            self._latent = (size, self._encode(size))
        return self._latent[1]

    def _encode(self, size: tuple[int, int]) -> Any:
        import torch

        height, width = size
        control: Any = None if self.image is None else _scaled(self.image, width, height)
        if self.layout.in_channels == LATENT_CHANNELS:
            return self._encoded(control)
        inpaint: Any = None if self.inpaint_image is None else _scaled(self.inpaint_image, width, height)
        if inpaint is None:
            inpaint = torch.full_like(control, 0.5)
        if self.keep is not None:
            keep = _scaled(self.keep.movedim(1, -1), width, height, "bilinear").round()
            keep = repeat_to_batch(keep, inpaint.shape[0]).to(inpaint.device)
            inpaint = (inpaint - 0.5) * keep + 0.5  # grey where the mask repaints
        inpaint_latent = self._encoded(inpaint)
        if control is None:
            control = torch.full_like(inpaint, 0.5)
        control_latent = self._encoded(control)
        rows, cols = inpaint_latent.shape[-2:]
        if self.keep is None:
            keep_channel = torch.zeros_like(inpaint_latent[:, :1])
        else:
            keep_channel = _scaled(self.keep.movedim(1, -1), cols, rows, "nearest").movedim(-1, 1)
        batch = max(control_latent.shape[0], keep_channel.shape[0], inpaint_latent.shape[0])
        parts = [control_latent, keep_channel.to(inpaint_latent), inpaint_latent]
        return torch.cat([repeat_to_batch(part, batch) for part in parts], dim=1)

    def _encoded(self, pixels: Any) -> Any:
        from engine.diffusion.latent_formats_flow import Flux

        return Flux().process_in(self.vae.encode(pixels[..., :3]).float())

    def to(self, device: Any) -> ZImageFunControl:
        import torch

        if self._latent is not None and isinstance(device, torch.device):
            self._latent = (self._latent[0], self._latent[1].to(device))
        self._stream = None
        return self

    def models(self) -> list[Any]:
        return []


def _added(img: Any, hint: Any, strength: float) -> Any:
    """`img` with strength × `hint` added to its first tokens (the control covers the unpadded image)."""
    import torch

    count = hint.shape[1]
    return torch.cat([img[:, :count] + hint.to(img.dtype) * strength, img[:, count:]], dim=1)


def _scaled(image: Any, width: int, height: int, method: str = "area") -> Any:
    """A [B, H, W, C] image resampled to width × height after a centre crop to its aspect ratio."""
    from nodes.image.basic import upscale

    return upscale(image.movedim(-1, 1).float(), width, height, method, "center").movedim(1, -1)
