"""ComfyUI's model configs (`comfy.supported_models_base.BASE` and the `comfy.supported_models`
classes) for the families Loom loads.

A config names a family by the parts of its UNet config that set it apart (`unet_config`, matched
against a model's full config by `matches`), its latent format and its sampling settings. Every
MODEL Loom loads carries one as `model.model.model_config`, chosen the way ComfyUI's detection does
(the first config in `MODELS` whose keys match the model's config, restricted to the family Loom's
own detection found), so packs that test `isinstance(model_config, comfy.supported_models.SDXL)`
get ComfyUI's answer. A config cannot build a model (`get_model`): Loom's networks are diffusers
modules, not ComfyUI's `comfy.ldm` classes.
"""

# ComfyUI's configs are classes whose dict and list attributes packs read and override per class;
# instances copy what they change (BASE.__init__).
# ruff: noqa: RUF012

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from engine.diffusion.latent_format_qwen21 import QwenImage21 as QwenImage21Format
from engine.diffusion.latent_formats import SD15 as SD15Format
from engine.diffusion.latent_formats import SDXL as SDXLFormat
from engine.diffusion.latent_formats import LatentFormat
from engine.diffusion.latent_formats_flow import SD3 as SD3Format
from engine.diffusion.latent_formats_flow import Flux as FluxFormat
from engine.diffusion.latent_formats_flow import Flux2 as Flux2Format
from engine.diffusion.latent_formats_flow import Wan21 as Wan21Format


def prefix_replace(
    state_dict: dict[str, Any], replace: dict[str, str], filter_keys: bool = False
) -> dict[str, Any]:
    """Keys starting with a prefix of `replace` get the new prefix; with `filter_keys`, other keys are
    dropped (ComfyUI's `state_dict_prefix_replace`)."""
    out: dict[str, Any] = {} if filter_keys else dict(state_dict)
    for old, new in replace.items():
        for key in [k for k in state_dict if k.startswith(old)]:
            out.pop(key, None)
            out[new + key[len(old) :]] = state_dict[key]
    return out


@dataclass(frozen=True)
class UnscaledFormat(LatentFormat):
    """ComfyUI's base LatentFormat: latents used as they are (scale 1), 4 channels."""

    scale_factor: float = 1.0


class ClipTarget:
    """The tokenizer and text-encoder classes of a family (ComfyUI's ClipTarget)."""

    def __init__(self, tokenizer: Any, clip: Any) -> None:
        self.clip = clip
        self.tokenizer = tokenizer
        self.params: dict[str, Any] = {}


class BASE:
    """A model family's config: the UNet keys that identify it, latent format and sampling settings."""

    unet_config: dict[str, Any] = {}
    unet_extra_config: ClassVar[dict[str, Any]] = {"num_heads": -1, "num_head_channels": 64}
    required_keys: ClassVar[dict[str, Any]] = {}
    clip_prefix: ClassVar[list[str]] = []
    clip_vision_prefix: ClassVar[str | None] = None
    noise_aug_config: ClassVar[dict[str, Any] | None] = None
    sampling_settings: dict[str, Any] = {}
    latent_format: Any = UnscaledFormat
    vae_key_prefix: ClassVar[list[str]] = ["first_stage_model."]
    text_encoder_key_prefix: ClassVar[list[str]] = ["cond_stage_model."]
    supported_inference_dtypes: ClassVar[list[Any]] = [torch.float16, torch.bfloat16, torch.float32]
    memory_usage_factor: ClassVar[float] = 2.0
    manual_cast_dtype: Any = None
    custom_operations: Any = None
    scaled_fp8: Any = None
    optimizations: dict[str, Any] = {"fp8": False}
    # Loom's family name for the models this config describes (None: a family Loom does not load).
    loom_family: ClassVar[str | None] = None

    @classmethod
    def matches(cls, unet_config: dict[str, Any], state_dict: dict[str, Any] | None = None) -> bool:
        """Whether every identifying key has this config's value (and the required weights exist)."""
        if any(key not in unet_config or unet_config[key] != value for key, value in cls.unet_config.items()):
            return False
        return state_dict is None or all(key in state_dict for key in cls.required_keys)

    def __init__(self, unet_config: dict[str, Any], latent_format: Any = None) -> None:
        # Instance copies, so a pack changing one model's config leaves the class and others alone.
        self.unet_config = {**unet_config, **type(self).unet_extra_config}
        self.sampling_settings = dict(type(self).sampling_settings)
        self.optimizations = dict(type(self).optimizations)
        fmt = type(self).latent_format
        self.latent_format = (
            latent_format if latent_format is not None else (fmt() if isinstance(fmt, type) else fmt)
        )
        self.family = type(self).loom_family

    @property
    def name(self) -> str:
        return type(self).__name__

    def model_type(self, state_dict: dict[str, Any], prefix: str = "") -> Any:
        from engine.diffusion.diffusion_model import ModelType

        return ModelType.EPS

    def inpaint_model(self) -> bool:
        return int(self.unet_config.get("in_channels", 4)) > 4

    def get_model(self, state_dict: dict[str, Any], prefix: str = "", device: Any = None) -> Any:
        raise NotImplementedError(
            f"{self.name}.get_model: Loom does not build ComfyUI's comfy.ldm networks (model_base.BaseModel "
            "with an openaimodel.UNetModel) from a model config; load the file with Loom's loaders "
            "(comfy.sd.load_checkpoint_guess_config, load_diffusion_model) instead"
        )

    def process_clip_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return prefix_replace(state_dict, {key: "" for key in self.text_encoder_key_prefix}, filter_keys=True)

    def process_unet_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return state_dict

    def process_vae_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return state_dict

    def process_clip_state_dict_for_saving(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return prefix_replace(state_dict, {"": self.text_encoder_key_prefix[0]})

    def process_clip_vision_state_dict_for_saving(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        prefix = self.clip_vision_prefix
        return prefix_replace(state_dict, {"": prefix}) if prefix is not None else dict(state_dict)

    def process_unet_state_dict_for_saving(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return prefix_replace(state_dict, {"": "model.diffusion_model."})

    def process_vae_state_dict_for_saving(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return prefix_replace(state_dict, {"": self.vae_key_prefix[0]})

    def set_inference_dtype(self, dtype: Any, manual_cast_dtype: Any) -> None:
        self.unet_config["dtype"] = dtype
        self.manual_cast_dtype = manual_cast_dtype


_NO_TEMPORAL = {"use_temporal_attention": False}


class SD15(BASE):
    unet_config = {"context_dim": 768, "model_channels": 320, "use_linear_in_transformer": False,
                   "adm_in_channels": None, **_NO_TEMPORAL}  # fmt: skip
    unet_extra_config = {"num_heads": 8, "num_head_channels": -1}
    latent_format = SD15Format
    memory_usage_factor = 1.0
    loom_family = "sd1"


class SD20(BASE):
    unet_config = {"context_dim": 1024, "model_channels": 320, "use_linear_in_transformer": True,
                   "adm_in_channels": None, **_NO_TEMPORAL}  # fmt: skip
    unet_extra_config = {"num_heads": -1, "num_head_channels": 64, "attn_precision": torch.float32}
    latent_format = SD15Format
    memory_usage_factor = 1.0
    loom_family = "sd2"


class SD21UnclipL(SD20):
    unet_config = {**SD20.unet_config, "adm_in_channels": 1536}
    clip_vision_prefix = "embedder.model.visual."
    noise_aug_config = {"noise_schedule_config": {"timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"},
                        "timestep_dim": 768}  # fmt: skip


class SD21UnclipH(SD20):
    unet_config = {**SD20.unet_config, "adm_in_channels": 2048}
    clip_vision_prefix = "embedder.model.visual."
    noise_aug_config = {"noise_schedule_config": {"timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"},
                        "timestep_dim": 1024}  # fmt: skip


class SDXLRefiner(BASE):
    unet_config = {"model_channels": 384, "use_linear_in_transformer": True, "context_dim": 1280,
                   "adm_in_channels": 2560, "transformer_depth": [0, 0, 4, 4, 4, 4, 0, 0],
                   **_NO_TEMPORAL}  # fmt: skip
    latent_format = SDXLFormat
    memory_usage_factor = 1.0
    loom_family = "sdxl_refiner"


class SDXL(BASE):
    unet_config = {"model_channels": 320, "use_linear_in_transformer": True,
                   "transformer_depth": [0, 0, 2, 2, 10, 10], "context_dim": 2048, "adm_in_channels": 2816,
                   **_NO_TEMPORAL}  # fmt: skip
    latent_format = SDXLFormat
    memory_usage_factor = 0.8
    loom_family = "sdxl"


def _sdxl_depth(depth: list[int]) -> dict[str, Any]:
    return {**SDXL.unet_config, "transformer_depth": depth}


class SSD1B(SDXL):
    unet_config = _sdxl_depth([0, 0, 2, 2, 4, 4])


class Segmind_Vega(SDXL):
    unet_config = _sdxl_depth([0, 0, 1, 1, 2, 2])


class KOALA_700M(SDXL):
    unet_config = _sdxl_depth([0, 2, 5])


class KOALA_1B(SDXL):
    unet_config = _sdxl_depth([0, 2, 6])


class SD15_instructpix2pix(SD15):
    unet_config = {**SD15.unet_config, "in_channels": 8}


class SDXL_instructpix2pix(SDXL):
    unet_config = {**SDXL.unet_config, "in_channels": 8}


class SD3(BASE):
    unet_config = {"in_channels": 16, "pos_embed_scaling_factor": None}
    sampling_settings = {"shift": 3.0}
    unet_extra_config = {}
    latent_format = SD3Format
    memory_usage_factor = 1.2
    text_encoder_key_prefix = ["text_encoders."]
    loom_family = "sd3"


class Flux(BASE):
    unet_config = {"image_model": "flux", "guidance_embed": True}
    unet_extra_config = {}
    latent_format = FluxFormat
    memory_usage_factor = 3.1
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]
    text_encoder_key_prefix = ["text_encoders."]
    loom_family = "flux"


class FluxSchnell(Flux):
    unet_config = {"image_model": "flux", "guidance_embed": False}
    sampling_settings = {"multiplier": 1.0, "shift": 1.0}


class Chroma(FluxSchnell):
    unet_config = {"image_model": "chroma"}
    sampling_settings = {"multiplier": 1.0}
    loom_family = "chroma"


class ChromaRadiance(Chroma):
    unet_config = {"image_model": "chroma_radiance"}
    loom_family = "chroma_radiance"


class Lumina2(BASE):
    """Z-Image (a Lumina 2 layout in ComfyUI's detection)."""

    unet_config = {"image_model": "lumina2"}
    sampling_settings = {"multiplier": 1.0, "shift": 6.0}
    unet_extra_config = {}
    latent_format = FluxFormat
    text_encoder_key_prefix = ["text_encoders."]
    loom_family = "zimage"


class Lumina2Image(Lumina2):
    """Lumina Image 2.0 itself (ComfyUI's Lumina2: shift 6, Flux's latent format)."""

    loom_family = "lumina2"


class QwenImage(BASE):
    unet_config = {"image_model": "qwen_image"}
    sampling_settings = {"multiplier": 1.0, "shift": 1.15}
    unet_extra_config = {}
    latent_format = Wan21Format
    text_encoder_key_prefix = ["text_encoders."]
    loom_family = "qwen_image"


class Flux2(Flux):
    """Flux.2 dev and Klein (ComfyUI's supported_models.Flux2)."""

    unet_config = {"image_model": "flux2"}
    sampling_settings = {"shift": 2.02}
    latent_format = Flux2Format  # type: ignore[assignment]  # ComfyUI's Flux2 format is no Flux format
    loom_family = "flux2"


class QwenImage21(BASE):
    unet_config = {"image_model": "qwen_image21"}
    sampling_settings = {"multiplier": 1.0, "shift": 0.69}
    unet_extra_config = {}
    latent_format = QwenImage21Format
    text_encoder_key_prefix = ["text_encoders."]
    loom_family = "qwen_image21"


class Flux3(BASE):
    """Flux 3 Klein (base and distilled): Flux.2's latent format, a constant shift of 6.93."""

    unet_config = {"image_model": "flux3"}
    sampling_settings = {"multiplier": 1.0, "shift": 6.93}
    unet_extra_config = {}
    latent_format = Flux2Format
    text_encoder_key_prefix = ["text_encoders."]
    loom_family = "flux3"


class HiDream(BASE):
    """HiDream-I1 / E1: no sampling settings (shift 1, timestep × 1000), Flux's latent format."""

    unet_config = {"image_model": "hidream"}
    sampling_settings: dict[str, Any] = {}
    unet_extra_config = {}
    latent_format = FluxFormat
    text_encoder_key_prefix = ["text_encoders."]
    loom_family = "hidream"


# ComfyUI's matching order (more specific configs first) over the families Loom loads.
MODELS: list[type[BASE]] = [
    SD15_instructpix2pix, SD15, SD20, SD21UnclipL, SD21UnclipH, SDXL_instructpix2pix, SDXLRefiner, SDXL,
    SSD1B, KOALA_700M, KOALA_1B, Segmind_Vega, SD3, Flux, FluxSchnell, Chroma, ChromaRadiance, Lumina2,
    QwenImage, Flux2, QwenImage21, Flux3, HiDream,
]  # fmt: skip
# The config of a family whose model matches no config exactly (Loom loads small or unusual UNets
# ComfyUI would not recognise: its detection then fails, Loom's names the family it found).
_FAMILY_DEFAULT: dict[str, type[BASE]] = {
    "sd1": SD15, "sd2": SD20, "sdxl": SDXL, "sdxl_refiner": SDXLRefiner, "sd3": SD3, "flux": Flux,
    "chroma": Chroma, "chroma_radiance": ChromaRadiance, "zimage": Lumina2, "qwen_image": QwenImage,
    "flux2": Flux2, "lumina2": Lumina2Image, "qwen_image21": QwenImage21, "flux3": Flux3, "hidream": HiDream,
}  # fmt: skip
# What ComfyUI's detection puts in the unet_config of the flow families, beside the network's own.
_FLOW_KEYS: dict[str, dict[str, Any]] = {
    "sd3": {"in_channels": 16, "pos_embed_scaling_factor": None},
    "flux": {"image_model": "flux"},
    "chroma": {"image_model": "chroma"},
    "chroma_radiance": {"image_model": "chroma_radiance"},
    "zimage": {"image_model": "lumina2"},
    "lumina2": {"image_model": "lumina2"},
    "qwen_image": {"image_model": "qwen_image"},
    "flux2": {"image_model": "flux2"},
    "qwen_image21": {"image_model": "qwen_image21"},
    "flux3": {"image_model": "flux3"},
    "hidream": {"image_model": "hidream"},
}


FLOW_FAMILIES = frozenset(_FLOW_KEYS)


def flow_unet_config(family: str, config: dict[str, Any]) -> dict[str, Any]:
    """A flow transformer's diffusers config with ComfyUI's identifying keys added."""
    keys = dict(_FLOW_KEYS.get(family, {}))
    if family == "flux":
        keys["guidance_embed"] = bool(config.get("guidance_embeds", True))
    return {**config, **keys}


def config_class_for(family: str, unet_config: dict[str, Any]) -> type[BASE]:
    """The config ComfyUI's detection would pick for this UNet config within Loom's detected family."""
    for cls in MODELS:
        if cls.loom_family == family and cls.matches(unet_config):
            return cls
    return _FAMILY_DEFAULT.get(family, BASE)


def model_config(family: str, unet_config: dict[str, Any], latent_format: Any) -> BASE:
    """The config a loaded model carries (its own latent format instance, e.g. a checkpoint's scale)."""
    config = config_class_for(family, unet_config)(unet_config, latent_format)
    config.family = family
    return config
