"""XLabs' Flux ControlNets (`flux-{canny,depth,hed}-controlnet*.safetensors`): Flux's own layout
(`double_blocks.N.*`, `img_in`, `txt_in`, `time_in`, `vector_in`, `guidance_in`) with `controlnet_blocks.N`,
`pos_embed_input` and a pixel-space hint encoder `input_hint_block.{0,2,…,14}` (eight 3×3 convolutions,
three of them stride 2, SiLU between), as ComfyUI 0.3.64's ControlNetFlux reads them.

The hint image (fitted to the latent's pixel size; no VAE) is mapped to [−1, 1], encoded to 16 channels
at the latent's size, packed in 2×2 patches and embedded; the double blocks run on the packed latent
(diffusers' FluxControlNetModel, keys through `engine.models.flux.blocks_to_diffusers`). Their residuals
are cycled over Flux's 19 double blocks (block outputs 0, 1, 0, 1, … for two), as ComfyUI's are for
ControlNets that take images. MistoLine's variant (other hint encoder and control heads) is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from .controlnet_flow import FLUX_DOUBLE, _Control, _count, _load
from .errors import UnsupportedModelError

# input_hint_block indices of the convolutions; which ones halve the size.
HINT_CONVS = (0, 2, 4, 6, 8, 10, 12, 14)
STRIDED = (4, 8, 12)


def hint_encoder(state: Mapping[str, Any]) -> torch.nn.Sequential:
    """The convolutions with SiLU between, at the shapes the file has."""
    layers: list[torch.nn.Module] = []
    for index in HINT_CONVS:
        out_channels, in_channels = state[f"input_hint_block.{index}.weight"].shape[:2]
        if layers:
            layers.append(torch.nn.SiLU())
        stride = 2 if index in STRIDED else 1
        layers.append(torch.nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride))
    return torch.nn.Sequential(*layers)


class XLabsFluxControl(torch.nn.Module, _Control):
    """XLabs' Flux ControlNet: double blocks on the packed latent plus the embedded hint features."""

    def __init__(self, state: dict[str, Any]) -> None:
        from diffusers import FluxControlNetModel

        from .flux import _EMBEDDERS, blocks_to_diffusers

        super().__init__()
        if "controlnet_blocks.0.linear.weight" in state:
            raise UnsupportedModelError("a MistoLine Flux ControlNet, which Loom does not load")
        inner, channels = state["img_in.weight"].shape
        config = {
            "num_layers": _count(state, "double_blocks."),
            "num_single_layers": 0,
            "attention_head_dim": 128,
            "num_attention_heads": inner // 128,
        }
        self.net = FluxControlNetModel(
            in_channels=channels,
            joint_attention_dim=state["txt_in.weight"].shape[1],
            pooled_projection_dim=state["vector_in.in_layer.weight"].shape[1],
            guidance_embeds="guidance_in.in_layer.weight" in state,
            **config,
        )
        self.net.controlnet_x_embedder = torch.nn.Linear(state["pos_embed_input.weight"].shape[1], inner)
        converted = blocks_to_diffusers(state, config, modulated=True)
        for p in ("weight", "bias"):
            converted[f"x_embedder.{p}"] = state[f"img_in.{p}"]
            converted[f"context_embedder.{p}"] = state[f"txt_in.{p}"]
            converted[f"controlnet_x_embedder.{p}"] = state[f"pos_embed_input.{p}"]
            for ours, theirs in _EMBEDDERS.items():
                if f"{ours}.in_layer.{p}" in state:
                    converted[f"{theirs}.linear_1.{p}"] = state[f"{ours}.in_layer.{p}"]
                    converted[f"{theirs}.linear_2.{p}"] = state[f"{ours}.out_layer.{p}"]
        for key, value in state.items():
            if re.match(r"controlnet_blocks\.\d+\.", key):
                converted[key] = value
        _load(self.net, converted)
        self.hint = _load(
            hint_encoder(state),
            {k[len("input_hint_block.") :]: v for k, v in state.items() if k.startswith("input_hint_block.")},
        )

    def forward(
        self, x: Any, timestep: Any, context: Any, hint: Any, added: dict[str, Any], extra: Any, main: Any
    ) -> dict[str, Any]:
        from engine.diffusion.flow_tokens import flux_ids, pack

        config = self.net.config
        self._check_context(context, config.joint_attention_dim)
        tokens, rows, cols = pack(x)
        features = self.hint(hint.to(x.dtype) * 2.0 - 1.0)
        pooled = added.get("pooled")
        if pooled is None:
            pooled = torch.zeros((x.shape[0], config.pooled_projection_dim), device=x.device)
        guidance = None
        if config.guidance_embeds:
            guidance = added.get("guidance", torch.full((x.shape[0],), 3.5))
            guidance = guidance.nan_to_num(0.0).to(x.device, x.dtype)
        double, _ = self.net(
            hidden_states=tokens,
            controlnet_cond=pack(features)[0],
            encoder_hidden_states=context,
            pooled_projections=pooled[:, : config.pooled_projection_dim].to(x.device, x.dtype),
            timestep=timestep.to(x.dtype),
            img_ids=flux_ids(rows, cols, x),
            txt_ids=torch.zeros((context.shape[1], 3), device=x.device, dtype=x.dtype),
            guidance=guidance,
            return_dict=False,
        )
        double = list(double or [])
        cycled = double * math.ceil(FLUX_DOUBLE / max(len(double), 1))
        return {"input": cycled[:FLUX_DOUBLE]}
