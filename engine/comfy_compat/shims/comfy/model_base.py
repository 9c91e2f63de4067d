"""ComfyUI's comfy.model_base: the class of `ModelPatcher.model` and the ModelType enum.

`BaseModel` is Loom's DiffusionModel (a diffusers UNet with its sampling and latent format);
`SD15`, `SD20`, `SD21UNCLIP`, `SDXL`, `SDXLRefiner` and the InstructPix2Pix ones are its per-family
subclasses, so packs' isinstance checks answer as in ComfyUI. Other ComfyUI model classes name
families Loom does not load.
"""

from engine.diffusion.diffusion_model import (
    SD15,
    SD20,
    SD21UNCLIP,
    SDXL,
    DiffusionModel,
    ModelType,
    SD15_instructpix2pix,
    SDXL_instructpix2pix,
    SDXLRefiner,
)

BaseModel = DiffusionModel

__all__ = [
    "SD15",
    "SD20",
    "SD21UNCLIP",
    "SDXL",
    "BaseModel",
    "ModelType",
    "SD15_instructpix2pix",
    "SDXLRefiner",
    "SDXL_instructpix2pix",
]
