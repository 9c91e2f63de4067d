"""A pack that imports ComfyUI's model-config surface the way ComfyUI-Easy-Use does: module-level
`comfy.supported_models(_base)`, `comfy.model_detection`, `comfy.conds`, the comfy.ldm network classes
(subclassed and wrapped at import), the SDXL ADM helpers of `comfy.model_base`, and helpers from
`comfy_extras` modules."""

# ComfyUI-style class attributes, as packs write them.
# ruff: noqa: RUF012

import functools

import comfy
import comfy.model_base
import comfy.model_detection as model_detection  # noqa: F401 - imported at module level, as Easy-Use does
import comfy.supported_models
import comfy.supported_models_base
import torch
from comfy.conds import CONDRegular
from comfy.k_diffusion.sampling import BrownianTreeNoiseSampler  # noqa: F401
from comfy.ldm.models.autoencoder import AutoencoderKL  # noqa: F401
from comfy.ldm.modules.attention import BasicTransformerBlock
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
from comfy.model_base import CLIPEmbeddingNoiseAugmentation, Timestep, sdxl_pooled  # noqa: F401
from comfy_extras.nodes_compositing import JoinImageWithAlpha  # noqa: F401
from comfy_extras.nodes_stable3d import camera_embeddings  # noqa: F401

# Easy-Use's ModelsToUnload reaches this through `import comfy` alone (comfy.sd imports it in ComfyUI).
UNLOAD = [comfy.sd1_clip.SD1ClipModel, comfy.ldm.models.autoencoder.AutoencoderKL]


class PackConfig(comfy.supported_models_base.BASE):
    """A config of the pack's own family (as Easy-Use's PixArt loader defines)."""

    unet_config = {"image_model": "pack_dit"}
    unet_extra_config = {}


class PackUNet(UNetModel):
    """A subclass of ComfyUI's UNet, defined at import (Easy-Use's KolorsUNetModel)."""


class PackSDXL(comfy.model_base.SDXL):
    """An SDXL model class built from a config (Easy-Use's KolorsSDXL)."""

    def __init__(self, model_config, model_type=comfy.model_base.ModelType.EPS, device=None):
        comfy.model_base.BaseModel.__init__(
            self, model_config, model_type, device=device, unet_model=PackUNet
        )


def _wrap(forward):
    @functools.wraps(forward)
    def wrapped(self, x, context=None, transformer_options={}):  # noqa: B006 - ComfyUI's signature
        return forward(self, x, context, transformer_options)

    return wrapped


BasicTransformerBlock.forward = _wrap(BasicTransformerBlock.forward)


def sd_version(model):
    """Easy-Use's get_sd_version: the family from the model's config class."""
    config = model.model.model_config
    if isinstance(config, comfy.supported_models.SDXL):
        return "sdxl"
    if isinstance(config, comfy.supported_models.SDXLRefiner):
        return "sdxl_refiner"
    if isinstance(config, (comfy.supported_models.SD15, comfy.supported_models.SD20)):
        return "sd1" if isinstance(config, comfy.supported_models.SD15) else "sd2"
    if isinstance(config, (comfy.supported_models.SVD_img2vid, comfy.supported_models.HunyuanDiT)):
        return "other"
    return "unknown"


class ConfigSdVersion:
    CATEGORY = "model_config_pack"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "version"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    def version(self, model):
        return (sd_version(model),)


class ConfigExtraCond:
    """Adds a `model_conds` entry to every conditioning entry and records, through a UNet function
    wrapper, what the model call received for it."""

    CATEGORY = "model_config_pack"
    RETURN_TYPES = ("MODEL", "CONDITIONING")
    FUNCTION = "patch"
    seen = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    def patch(self, model, conditioning):
        out = []
        for cond, options in conditioning:
            options = options.copy()
            model_conds = dict(options.get("model_conds", {}))
            model_conds["pack_probe"] = CONDRegular(torch.full((1, 3), 2.0))
            options["model_conds"] = model_conds
            out.append([cond, options])

        def wrapper(apply_model, args):
            probe = args["c"].get("pack_probe")  # the negative prompt's call has none
            ConfigExtraCond.seen.append(None if probe is None else tuple(probe.shape))
            return apply_model(args["input"], args["timestep"], **args["c"])

        patched = model.clone()
        patched.set_model_unet_function_wrapper(wrapper)
        return (patched, out)


NODE_CLASS_MAPPINGS = {"ConfigSdVersion": ConfigSdVersion, "ConfigExtraCond": ConfigExtraCond}
