"""ControlNetLoader and DiffControlNetLoader: ControlNet and T2I-Adapter files from models/controlnet
(and models/t2i_adapter, which ComfyUI maps to the same kind)."""

from __future__ import annotations

from typing import Annotated, Any

from engine import folders
from engine.native import Input, Model, Node, Socket

ControlNetType = Annotated[Any, Socket("CONTROL_NET")]
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def controlnet_files() -> list[str]:
    return [
        name for name in folders.current().model_files("controlnet") if name.lower().endswith(MODEL_SUFFIXES)
    ]


def _load(node: str, name: str, model: Any = None) -> Any:
    from engine.models.controlnet import load_controlnet
    from engine.models.errors import ModelLoadError

    try:
        return load_controlnet(folders.current().model_path("controlnet", name), model)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{node}: control_net_name {name!r} cannot be used: {exc}") from exc


class ControlNetLoader(Node):
    """Load a ControlNet (original, diffusers, control-LoRA or Union layout) or a T2I-Adapter."""

    display_name = "Load ControlNet Model"
    category = "loaders"

    def run(
        self,
        control_net_name: Annotated[
            str, Input("The ControlNet or T2I-Adapter file.", choices=controlnet_files)
        ],
    ) -> ControlNetType:
        return _load("ControlNetLoader", control_net_name)


class DiffControlNetLoader(Node):
    """Load a ControlNet relative to a model: a "diff" ControlNet stores its change from the base UNet,
    to which the MODEL's weights are added; other files load as ControlNetLoader loads them."""

    display_name = "Load ControlNet Model (diff)"
    category = "loaders"

    def run(
        self,
        model: Annotated[Model, Input("The model the ControlNet's weights are relative to.")],
        control_net_name: Annotated[str, Input("The ControlNet file.", choices=controlnet_files)],
    ) -> ControlNetType:
        return _load("DiffControlNetLoader", control_net_name, model)
