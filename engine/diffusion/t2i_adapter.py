"""T2I-Adapters as they travel on CONDITIONING (ComfyUI's comfy.controlnet.T2IAdapter).

A small encoder of the hint, run once per hint size over diffusers' T2IAdapter; its per-level features
are returned in ComfyUI's control layout ("input" entries, one per UNet input block, None where
nothing is added) and reach the UNet as diffusers' intra-block residuals (see
engine.diffusion.controlnet.unet_residuals).
"""

from __future__ import annotations

import math
from typing import Any

from engine.diffusion.controlnet import ControlBase, ControlDict, broadcast_image_to, fit_image


class T2IAdapter(ControlBase):
    """A T2I-Adapter: a small encoder of the hint whose features are added inside the UNet's encoder,
    computed once per hint size (ComfyUI's comfy.controlnet.T2IAdapter over diffusers' T2IAdapter)."""

    def __init__(
        self,
        t2i_model: Any,
        channels_in: int,
        compression_ratio: int,
        upscale_algorithm: str,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.t2i_model = t2i_model
        self.channels_in = channels_in
        self.control_input: ControlDict | None = None
        self.compression_ratio = compression_ratio
        self.upscale_algorithm = upscale_algorithm
        self.device = device

    def scale_image_to(self, width: int, height: int) -> tuple[int, int]:
        unshuffle = self.t2i_model.config.downscale_factor
        return math.ceil(width / unshuffle) * unshuffle, math.ceil(height / unshuffle) * unshuffle

    def get_control(
        self, x_noisy: Any, t: Any, cond: dict[str, Any], batched_number: int, transformer_options: Any = None
    ) -> ControlDict | None:
        control_prev = self.previous_control(x_noisy, t, cond, batched_number, transformer_options)
        if self.out_of_range(t):
            return control_prev
        height, width = x_noisy.shape[2] * self.compression_ratio, x_noisy.shape[3] * self.compression_ratio
        if self.cond_hint is None or tuple(self.cond_hint.shape[2:]) != (height, width):
            self.control_input = None
            width, height = self.scale_image_to(width, height)
            hint = fit_image(self.cond_hint_original.float(), width, height, self.upscale_algorithm)
            if self.channels_in == 1 and hint.shape[1] > 1:
                hint = hint.mean(1, keepdim=True)
            self.cond_hint = hint.to(x_noisy.device)
        if x_noisy.shape[0] != self.cond_hint.shape[0]:
            self.cond_hint = broadcast_image_to(self.cond_hint, x_noisy.shape[0], batched_number)
        if self.control_input is None:
            dtype = next(self.t2i_model.parameters()).dtype
            features = self.t2i_model(self.cond_hint.to(dtype))
            self.control_input = adapter_control(features, self.t2i_model.config.adapter_type)
        control = {
            key: [None if a is None else a.clone() for a in values]
            for key, values in self.control_input.items()
        }
        return self.control_merge(control, control_prev, x_noisy.dtype)

    def copy(self) -> T2IAdapter:
        c = T2IAdapter(
            self.t2i_model, self.channels_in, self.compression_ratio, self.upscale_algorithm, self.device
        )
        self.copy_to(c)
        return c

    def get_models(self) -> list[Any]:
        return [*super().get_models(), self.t2i_model]

    def cleanup(self) -> None:
        self.control_input = None
        super().cleanup()


def adapter_control(features: list[Any], adapter_type: str) -> ControlDict:
    """An adapter's per-level features in ComfyUI's control layout: "input" holds one entry per UNet
    input block, popped from the end, None where nothing is added (the level's last block for SD1.x;
    SDXL's blocks 3, 5 and 8, and the middle block)."""
    slots: list[Any] = []
    if adapter_type == "full_adapter_xl":
        gaps = (3, 1, 2, 1)
        for gap, feature in zip(gaps, features, strict=True):
            slots += [None] * gap + [feature]
        slots = slots[::-1]
        return {"input": slots[1:], "middle": slots[:1]}
    for feature in features:
        slots += [None, None, feature]
    return {"input": slots[::-1]}
