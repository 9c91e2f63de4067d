"""UpscaleModelLoader and ImageUpscaleWithModel, with ComfyUI's names, inputs and outputs."""

from __future__ import annotations

from typing import Annotated, Any

from engine import folders
from engine.context import Context
from engine.native import Image, Input, Node, Socket

UpscaleModel = Annotated[Any, Socket("UPSCALE_MODEL")]
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def upscale_model_files() -> list[str]:
    return [
        name
        for name in folders.current().model_files("upscale_models")
        if name.lower().endswith(MODEL_SUFFIXES)
    ]


class UpscaleModelLoader(Node):
    """Load an upscale model from models/upscale_models: ESRGAN (old and new key layouts), RealESRGAN,
    compact SRVGG, SwinIR, DAT, HAT and the other single-image architectures spandrel detects."""

    display_name = "Load Upscale Model"
    category = "loaders"

    def run(
        self, model_name: Annotated[str, Input("The upscale model file.", choices=upscale_model_files)]
    ) -> UpscaleModel:
        from engine.models.upscale import load_upscale_model

        return load_upscale_model(folders.current().model_path("upscale_models", model_name))


class ImageUpscaleWithModel(Node):
    """Upscale an image by the model's factor, in 512-pixel tiles overlapping by 32 (halved on
    out-of-memory), blended as ComfyUI blends them; progress is reported per tile."""

    display_name = "Upscale Image (using Model)"
    category = "image/upscaling"

    def run(
        self,
        ctx: Context,
        upscale_model: Annotated[UpscaleModel, Input("The model from Load Upscale Model.")],
        image: Annotated[Image, Input("The image to upscale.")],
    ) -> Image:
        from engine.models.upscale import upscale

        return upscale(upscale_model, image, progress=ctx.progress)
