"""ControlNet files of the flow transformers, detected from their keys as ComfyUI 0.3.64 detects them and
built on diffusers' ControlNet models:

- Stability's SD3.5 Large ControlNets (`sd3.5_large_controlnet_{blur,canny,depth}`): single-stream
  blocks with fused `attn.qkv`, `adaLN_modulation.1`, `mlp.fc1/fc2`, a `control_type` number; the
  patch embedding is the sampled model's own (diffusers' SD3ControlNetModel without a `pos_embed`);
- InstantX's SD3 ControlNets (diffusers' SD3ControlNetModel layout, `pos_embed_input` plus joint blocks);
- InstantX's Flux ControlNets and the Union ones (InstantX, Shakker Union Pro): diffusers'
  FluxControlNetModel layout (`controlnet_x_embedder`, `controlnet_mode_embedder` for Union);
- InstantX's Qwen-Image ControlNets (Union, Inpainting): diffusers' QwenImageControlNetModel layout;
- alibaba-pai's Qwen-Image Fun ControlNets (`control_blocks.N.after_proj`, `control_img_in`):
  `engine.models.controlnet_qwen_fun`, run on the sampled model's embedders.

Each becomes a module whose forward returns ComfyUI's control dict, residuals repeated over the blocks
of the released model as ComfyUI's ControlNets repeat them (SD3: width / 64 blocks; SD3.5 Large: 38;
Flux: 19 double and 38 single; Qwen-Image: 60). XLabs' Flux ControlNets: `engine.models.controlnet_xlabs`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from .errors import UnsupportedModelError

FLUX_DOUBLE, FLUX_SINGLE, QWEN_BLOCKS = 19, 38, 60


def flow_controlnet_kind(state: Mapping[str, Any]) -> str | None:
    """ "sd35", "sd3", "flux", "qwen_image", "qwen_fun" or "xlabs" for a flow ControlNet file, else None."""
    if "controlnet_blocks.0.linear.weight" in state:
        return "xlabs"
    if "control_blocks.0.after_proj.weight" in state and "control_img_in.weight" in state:
        return "qwen_fun"
    if "controlnet_blocks.0.weight" not in state:
        return None
    if "double_blocks.0.img_attn.norm.key_norm.scale" in state:
        return "xlabs"
    if "pos_embed_input.proj.weight" in state:
        return "sd35" if "transformer_blocks.0.adaLN_modulation.1.bias" in state else "sd3"
    if "transformer_blocks.0.img_mlp.net.0.proj.weight" in state:
        return "qwen_image"
    if "controlnet_x_embedder.weight" in state:
        return "flux"
    return None


def load_flow_controlnet(kind: str, state: dict[str, Any]) -> Any:
    """The FlowControlNet of a file of `kind` (see `flow_controlnet_kind`)."""
    from engine.diffusion.controlnet_flow import FlowControlNet
    from engine.diffusion.latent_formats_flow import SD3, Flux, Wan21

    if kind == "qwen_fun":
        from .controlnet_qwen_fun import QwenFunControl

        return FlowControlNet(QwenFunControl(state), "qwen_image", Wan21())
    if kind == "xlabs":
        from .controlnet_xlabs import XLabsFluxControl

        return FlowControlNet(XLabsFluxControl(state), "flux", None)
    if kind == "sd35":
        control_type = round(float(state.pop("control_type").item())) if "control_type" in state else -1
        model: Any = SD35Control(state)
        preprocess = {1: _canny_input, 2: _depth_input}.get(control_type)
        return FlowControlNet(model, "sd3", SD3(), preprocess_image=preprocess or _same)
    if kind == "sd3":
        model = SD3Control(state)
        channels = state["pos_embed_input.proj.weight"].shape[1]
        return FlowControlNet(model, "sd3", SD3(shift_factor=0.0), concat_mask=channels == 17)
    if kind == "flux":
        model = FluxControl(state)
        channels = state["controlnet_x_embedder.weight"].shape[1] // 4
        return FlowControlNet(model, "flux", Flux(), concat_mask=channels == 17)
    model = QwenControl(state)
    channels = state["controlnet_x_embedder.weight"].shape[1]
    return FlowControlNet(model, "qwen_image", Wan21(), concat_mask=channels == 68)


def _same(image: Any) -> Any:
    return image


def _canny_input(image: Any) -> Any:
    """What ComfyUI feeds Stability's canny ControlNet (its `control_type` 1): the image × 127.5 + 0.5."""
    return image * 255 * 0.5 + 0.5


def _depth_input(image: Any) -> Any:
    """Stability's depth ControlNet (`control_type` 2) takes inverted depth."""
    return 1.0 - image


def _count(state: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def _load(module: Any, state: Mapping[str, Any], optional: tuple[str, ...] = ()) -> Any:
    """Load `state` into `module` in the control networks' dtype; every weight must be there."""
    from .controlnet import weights_dtype

    missing, unexpected = module.load_state_dict(dict(state), strict=False)
    missing = [k for k in missing if not k.endswith(optional)]
    if missing or unexpected:
        raise ValueError(f"missing keys {missing[:4]}, unexpected keys {unexpected[:4]}")
    dtype = weights_dtype()
    if next(module.parameters()).dtype != dtype:  # (diffusers warns on every dtype cast)
        module = module.to(dtype)
    return module.eval()


class _Control:
    """Shared: the wrapped diffusers network's dtype and the width check of the text conditioning."""

    net: Any

    def _check_context(self, context: Any, width: int) -> None:
        if context.shape[-1] != width:
            raise ValueError(
                f"this ControlNet takes text conditioning {width} wide, the model gives {context.shape[-1]}: "
                "it was made for another model"
            )


class SD3Control(torch.nn.Module, _Control):
    """InstantX's SD3 ControlNet: joint blocks on the latent plus the embedded hint latent; the pooled
    vector is zeroed (ComfyUI's "weird sd3 controlnet" rule) and each block's residual covers
    width/64 ÷ blocks blocks of the sampled model (one fewer for the last)."""

    def __init__(self, state: dict[str, Any]) -> None:
        from diffusers import SD3ControlNetModel

        super().__init__()
        inner, latent, patch = state["pos_embed.proj.weight"].shape[:3]
        positions = state.get("pos_embed.pos_embed")
        self.net = SD3ControlNetModel(
            patch_size=patch,
            in_channels=latent,
            num_layers=_count(state, "transformer_blocks."),
            attention_head_dim=64,
            num_attention_heads=inner // 64,
            joint_attention_dim=state["context_embedder.weight"].shape[1],
            caption_projection_dim=state["context_embedder.weight"].shape[0],
            pooled_projection_dim=state["time_text_embed.text_embedder.linear_1.weight"].shape[1],
            out_channels=latent,
            pos_embed_max_size=math.isqrt(positions.shape[1]) if positions is not None else 96,
            extra_conditioning_channels=state["pos_embed_input.proj.weight"].shape[1] - latent,
            dual_attention_layers=tuple(
                i
                for i in range(_count(state, "transformer_blocks."))
                if f"transformer_blocks.{i}.attn2.to_q.weight" in state
            ),
            qk_norm="rms_norm" if "transformer_blocks.0.attn.norm_q.weight" in state else None,
        )
        _load(self.net, state, optional=("pos_embed.pos_embed",))
        self.depth = inner // 64

    def forward(
        self, x: Any, timestep: Any, context: Any, hint: Any, added: dict[str, Any], extra: Any, main: Any
    ) -> dict[str, list[Any]]:

        self._check_context(context, self.net.config.joint_attention_dim)
        pooled = torch.zeros(
            (x.shape[0], self.net.config.pooled_projection_dim), device=x.device, dtype=x.dtype
        )
        samples = self.net(
            hidden_states=x,
            controlnet_cond=hint,
            encoder_hidden_states=context,
            pooled_projections=pooled,
            timestep=timestep.to(x.dtype),
            return_dict=False,
        )[0]
        out: list[Any] = []
        per_block = self.depth // len(samples)
        for index, sample in enumerate(samples):
            out += [sample] * (per_block - (1 if index == len(samples) - 1 else 0))
        return {"output": out}


def sd35_to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """Stability's SD3.5 ControlNet names → diffusers' SD3ControlNetModel (single-stream blocks)."""
    out: dict[str, Any] = {}
    renames = {
        "attn.proj.": "attn.to_out.0.",
        "mlp.fc1.": "ff.net.0.proj.",
        "mlp.fc2.": "ff.net.2.",
        "adaLN_modulation.1.": "norm1.linear.",
    }
    for key, value in state.items():
        match = re.match(r"(transformer_blocks\.\d+\.)attn\.qkv\.(weight|bias)$", key)
        if match:
            for name, part in zip(("to_q", "to_k", "to_v"), value.chunk(3, dim=0), strict=True):
                out[f"{match.group(1)}attn.{name}.{match.group(2)}"] = part
            continue
        for old, new in renames.items():
            if old in key and key.startswith("transformer_blocks."):
                key = key.replace(old, new)
                break
        out[key] = value
    return out


class SD35Control(torch.nn.Module, _Control):
    """Stability's SD3.5 Large ControlNet: the sampled model's patch embedding with a centred sin-cos
    grid, plus the embedded hint latent, through single-stream blocks conditioned on time and the pooled
    vector; each block's residual covers ⌈38 ÷ blocks⌉ blocks of the sampled model."""

    def __init__(self, state: dict[str, Any]) -> None:
        from diffusers import SD3ControlNetModel

        super().__init__()
        hidden, pooled = state["time_text_embed.text_embedder.linear_1.weight"].shape
        if hidden == pooled:
            raise UnsupportedModelError(
                "an SD3.5 ControlNet with a doubled pooled embedder, which Loom does not load"
            )
        latent, patch = state["pos_embed_input.proj.weight"].shape[1:3]
        self.net = SD3ControlNetModel(
            patch_size=patch,
            in_channels=latent,
            num_layers=_count(state, "transformer_blocks."),
            attention_head_dim=64,
            num_attention_heads=hidden // 64,
            joint_attention_dim=None,
            caption_projection_dim=hidden,
            pooled_projection_dim=pooled,
            out_channels=latent,
            pos_embed_max_size=None,
            pos_embed_type=None,
            use_pos_embed=False,
            force_zeros_for_pooled_projection=False,
        )
        _load(self.net, sd35_to_diffusers(state))
        self.depth = hidden // 64

    def forward(
        self, x: Any, timestep: Any, context: Any, hint: Any, added: dict[str, Any], extra: Any, main: Any
    ) -> dict[str, list[Any]]:
        import torch.nn.functional as F

        proj = main.pos_embed.proj
        if proj.weight.shape[0] != self.net.inner_dim:
            raise ValueError(
                f"this SD3.5 ControlNet is {self.net.inner_dim} wide, the sampled model "
                f"{proj.weight.shape[0]}: it was made for another SD3 model"
            )
        patch = self.net.config.patch_size
        weight, bias = proj.weight.to(x.dtype), proj.bias.to(x.dtype)
        tokens = F.conv2d(x, weight, bias, stride=patch).flatten(2).transpose(1, 2)
        rows, cols = (x.shape[-2] + 1) // patch, (x.shape[-1] + 1) // patch
        tokens = tokens + centred_sincos(self.net.inner_dim, rows, cols, x.device).to(x.dtype)
        pooled = added.get("pooled")
        if pooled is None:
            pooled = torch.zeros((x.shape[0], self.net.config.pooled_projection_dim), device=x.device)
        temb = self.net.time_text_embed(timestep.to(x.dtype), pooled.to(x.device, x.dtype))
        tokens = tokens + self.net.pos_embed_input(hint)
        repeat = math.ceil(self.depth / len(self.net.transformer_blocks))
        out: list[Any] = []
        for block, head in zip(self.net.transformer_blocks, self.net.controlnet_blocks, strict=True):
            tokens = block(tokens, temb)
            out += [head(tokens)] * repeat
        return {"output": out}


def centred_sincos(width: int, rows: int, cols: int, device: Any) -> Any:
    """Sin-cos positions on a grid centred at 7.5 whose shorter side spans ±7.5 (what ComfyUI's SD3.5
    ControlNet adds to its patch tokens): [rows × cols, width], column half first."""
    shorter = min(rows, cols)
    half_rows, half_cols = rows / shorter * 7.5, cols / shorter * 7.5
    ys = torch.linspace(7.5 - half_rows, 7.5 + half_rows, rows, device=device)
    xs = torch.linspace(7.5 - half_cols, 7.5 + half_cols, cols, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")

    def axis(positions: Any) -> Any:
        quarter = width // 4
        freqs = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
        angles = positions.reshape(-1, 1) * freqs
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([axis(grid_x), axis(grid_y)], dim=1)


class FluxControl(torch.nn.Module, _Control):
    """InstantX's Flux ControlNet (and the Union ones): Flux double and single blocks on the packed latent
    plus the packed hint latent; a Union one prepends its mode embedding to the text tokens when
    SetUnionControlNetType names a type. Each double residual covers ⌈19 ÷ blocks⌉ double blocks,
    each single one ⌈38 ÷ blocks⌉ single blocks."""

    def __init__(self, state: dict[str, Any]) -> None:
        from diffusers import FluxControlNetModel

        super().__init__()
        inner, channels = state["x_embedder.weight"].shape
        modes = state.get("controlnet_mode_embedder.weight")
        self.net = FluxControlNetModel(
            in_channels=channels,
            num_layers=_count(state, "transformer_blocks."),
            num_single_layers=_count(state, "single_transformer_blocks."),
            attention_head_dim=128,
            num_attention_heads=inner // 128,
            joint_attention_dim=state["context_embedder.weight"].shape[1],
            pooled_projection_dim=state["time_text_embed.text_embedder.linear_1.weight"].shape[1],
            guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in state,
            num_mode=None if modes is None else modes.shape[0],
        )
        hint_width = state["controlnet_x_embedder.weight"].shape[1]
        if hint_width != channels:  # inpainting ones take the mask channel too
            self.net.controlnet_x_embedder = torch.nn.Linear(hint_width, inner)
        _load(self.net, state)

    def forward(
        self, x: Any, timestep: Any, context: Any, hint: Any, added: dict[str, Any], extra: Any, main: Any
    ) -> dict[str, Any]:

        from engine.diffusion.flow_tokens import flux_ids, pack

        config = self.net.config
        self._check_context(context, config.joint_attention_dim)
        tokens, rows, cols = pack(x)
        hint_tokens = pack(hint)[0]
        pooled = added.get("pooled")
        if pooled is None:
            pooled = torch.zeros((x.shape[0], config.pooled_projection_dim), device=x.device)
        pooled = pooled[:, : config.pooled_projection_dim].to(x.device, x.dtype)
        guidance = None
        if config.guidance_embeds:
            guidance = (
                added.get("guidance", torch.full((x.shape[0],), 3.5)).nan_to_num(0.0).to(x.device, x.dtype)
            )
        types = list(extra.get("control_type", []) if isinstance(extra, dict) else [])
        mode = None
        if types and self.net.union:
            mode = torch.tensor(types, device=x.device).unsqueeze(0).expand(x.shape[0], -1)
        union = self.net.union
        self.net.union = mode is not None
        try:
            double, single = self.net(
                hidden_states=tokens,
                controlnet_cond=hint_tokens,
                controlnet_mode=mode,
                encoder_hidden_states=context,
                pooled_projections=pooled,
                timestep=timestep.to(x.dtype),
                img_ids=flux_ids(rows, cols, x),
                txt_ids=torch.zeros((context.shape[1], 3), device=x.device, dtype=x.dtype),
                guidance=guidance,
                return_dict=False,
            )
        finally:
            self.net.union = union
        out: dict[str, Any] = {"input": _repeated(double or [], FLUX_DOUBLE)}
        if single:
            out["output"] = _repeated(single, FLUX_SINGLE)
        return out


def _repeated(samples: list[Any], blocks: int) -> list[Any]:
    """Each residual repeated over ⌈blocks ÷ len⌉ consecutive blocks, cut to `blocks`."""
    if not samples:
        return []
    repeat = math.ceil(blocks / len(samples))
    return [sample for sample in samples for _ in range(repeat)][:blocks]


class QwenControl(torch.nn.Module, _Control):
    """InstantX's Qwen-Image ControlNet (Union, Inpainting): Qwen-Image blocks on the packed latent plus
    the packed hint latent (with the mask channel for inpainting); each residual covers ⌈60 ÷ blocks⌉
    blocks of the sampled model."""

    def __init__(self, state: dict[str, Any]) -> None:
        from diffusers import QwenImageControlNetModel

        super().__init__()
        inner, channels = state["img_in.weight"].shape
        self.net = QwenImageControlNetModel(
            in_channels=channels,
            out_channels=channels // 4,
            num_layers=_count(state, "transformer_blocks."),
            attention_head_dim=128,
            num_attention_heads=inner // 128,
            joint_attention_dim=state["txt_in.weight"].shape[1],
            extra_condition_channels=state["controlnet_x_embedder.weight"].shape[1] - channels,
        )
        _load(self.net, state)

    def forward(
        self, x: Any, timestep: Any, context: Any, hint: Any, added: dict[str, Any], extra: Any, main: Any
    ) -> dict[str, Any]:
        from engine.diffusion.flow_tokens import pack

        self._check_context(context, self.net.config.joint_attention_dim)
        tokens, rows, cols = pack(x)
        samples = self.net(
            hidden_states=tokens,
            controlnet_cond=pack(hint)[0],
            encoder_hidden_states=context,
            timestep=timestep.to(x.dtype),
            img_shapes=[[(1, rows, cols)]] * x.shape[0],
            return_dict=False,
        )
        return {"input": _repeated(list(samples or []), QWEN_BLOCKS)}
