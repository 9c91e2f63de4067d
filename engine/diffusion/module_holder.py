"""A module as ComfyUI's loaders hand it around (`vae.patcher`, `clip.patcher`): the module and its devices.

`comfy.model_management.load_models_gpu([holder])` moves `holder.model` to the compute device through
Loom's model manager; nothing else of ComfyUI's ModelPatcher is implied.
"""

from __future__ import annotations

from typing import Any

import torch


class ModuleHolder:
    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def load_device(self) -> torch.device:
        from engine.diffusion.devices import manager

        return manager().device

    @property
    def offload_device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def current_device(self) -> torch.device:
        return next(self.model.parameters()).device

    def current_loaded_device(self) -> torch.device:
        return self.current_device

    def model_dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def model_size(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def loaded_size(self) -> int:
        return self.model_size() if self.current_device.type != "cpu" else 0

    def model_state_dict(self, filter_prefix: str | None = None) -> dict[str, Any]:
        state = self.model.state_dict()
        return {k: v for k, v in state.items() if filter_prefix is None or k.startswith(filter_prefix)}
