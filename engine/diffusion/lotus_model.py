"""Lotus-D's MODEL (ComfyUI's model_base.Lotus): an SD2 UNet whose class embedding always gets the task
switch of the prediction task, sampled as the IMG_TO_IMG model type."""

from __future__ import annotations

from typing import Any

from engine.diffusion.diffusion_model import SD20, ModelType

# Lotus' task switch: (1, 0) selects the prediction branch of its training; the UNet gets its sin and cos.
TASK_SWITCH = (1.0, 0.0)


def task_embedding(device: Any = None) -> Any:
    """[sin 1, sin 0, cos 1, cos 0], computed in float32 as ComfyUI does (1, 4)."""
    import torch

    switch = torch.tensor(TASK_SWITCH, dtype=torch.float32, device=device)
    return torch.cat([switch.sin(), switch.cos()]).unsqueeze(0)


class Lotus(SD20):
    """An SD2-style UNet with a 4-input class embedding fed the task embedding on every call."""

    def __init__(self, unet: Any, model_sampling: Any, family: str, latent_format: Any) -> None:
        super().__init__(unet, model_sampling, family, latent_format)
        self.model_type = ModelType.IMG_TO_IMG

    def apply_model(self, x: Any, t: Any, *args: Any, **kwargs: Any) -> Any:
        """As every UNet's, with `y` (the class input) set to the task embedding for each batch row."""
        if kwargs.get("y") is None:
            kwargs["y"] = task_embedding(x.device).expand(x.shape[0], -1)
        return super().apply_model(x, t, *args, **kwargs)
