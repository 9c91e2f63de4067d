"""ComfyUI's comfy.controlnet: the control objects that travel on CONDITIONING and their loaders.

`ControlBase`, `ControlNet`, `ControlLora` and `T2IAdapter` are the classes Loom's ControlNetLoader
returns (engine.diffusion.controlnet), so packs that build conditioning with `copy()`,
`set_cond_hint(...)` and `set_previous_controlnet(...)`, or test `isinstance(x, comfy.controlnet.
ControlNet)`, see what Loom's nodes make. The loaders read the layouts engine.models.controlnet reads
(original, diffusers, diff, control-LoRA, T2I-Adapter); other files raise Loom's UnsupportedModelError
naming the file, where ComfyUI logs and returns None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.diffusion.controlnet import (
    ControlBase,
    ControlLora,
    ControlNet,
    StrengthType,
    broadcast_image_to,
)
from engine.diffusion.t2i_adapter import T2IAdapter

__all__ = [
    "ControlBase",
    "ControlLora",
    "ControlNet",
    "StrengthType",
    "T2IAdapter",
    "broadcast_image_to",
    "load_controlnet",
    "load_controlnet_state_dict",
    "load_t2i_adapter",
]


def load_controlnet(
    ckpt_path: str | Path, model: Any = None, model_options: dict[str, Any] | None = None
) -> Any:
    """The control object of a ControlNet/T2I-Adapter file; `model` for diff ControlNets."""
    from engine.models.controlnet import load_controlnet as load

    control = load(ckpt_path, model)
    if (model_options or {}).get("global_average_pooling"):
        control.global_average_pooling = True
    return control


def load_controlnet_state_dict(
    state_dict: dict[str, Any], model: Any = None, model_options: dict[str, Any] | None = None
) -> Any:
    from engine.models.controlnet import load_controlnet_state_dict as load

    control = load(dict(state_dict), model)
    if (model_options or {}).get("global_average_pooling"):
        control.global_average_pooling = True
    return control


def load_t2i_adapter(t2i_data: dict[str, Any], model_options: dict[str, Any] | None = None) -> Any:
    """A T2IAdapter from adapter weights, or None when they are not a T2I-Adapter's (as ComfyUI)."""
    from engine.models.controlnet import t2i_adapter

    return t2i_adapter(dict(t2i_data))
