"""What ComfyUI calls BaseModel (`ModelPatcher.model`), over Loom's diffusers UNet.

It answers the attributes packs read (`diffusion_model`, `model_sampling`, `latent_format`,
`model_config`, `model_type`, `get_dtype()`, `state_dict()` in ComfyUI's key names) and
`apply_model(x, sigma, c_crossattn=..., control=..., transformer_options=...)`, which returns the denoised
prediction as ComfyUI's does. The conditioning dict `c` that Loom's sampler passes holds
`c_crossattn`, `transformer_options` and, for SDXL, diffusers' `added_cond_kwargs` (text_embeds,
time_ids) in place of ComfyUI's `y` vector.
"""

from __future__ import annotations

import enum
from typing import Any


class ModelType(enum.Enum):
    """ComfyUI's comfy.model_base.ModelType (the prediction parameterisation)."""

    EPS = 1
    V_PREDICTION = 2
    V_PREDICTION_EDM = 3
    STABLE_CASCADE = 4
    EDM = 5
    FLOW = 6
    V_PREDICTION_CONTINUOUS = 7
    FLUX = 8
    IMG_TO_IMG = 9


_PREDICTION_TO_TYPE = {"eps": ModelType.EPS, "v_prediction": ModelType.V_PREDICTION}


def comfy_unet_config(config: dict[str, Any]) -> dict[str, Any]:
    """diffusers' UNet config with ComfyUI's unet_config keys added (packs read `model_channels`,
    `context_dim`, `channel_mult`, ...)."""
    channels = list(config.get("block_out_channels", [320]))
    levels = len(channels)
    depth = config.get("transformer_layers_per_block", 1)
    depth = list(depth) if isinstance(depth, (list, tuple)) else [depth] * levels
    middle = depth[-1] if depth else 1  # diffusers' mid block takes the last level's depth
    depth = [
        d if t.startswith("CrossAttn") else 0
        for d, t in zip(depth, config.get("down_block_types", []), strict=False)
    ]
    per_level = config.get("layers_per_block", 2)
    comfy = {
        "use_checkpoint": False,
        "image_size": 32,
        "in_channels": config.get("in_channels", 4),
        "out_channels": config.get("out_channels", 4),
        "model_channels": channels[0],
        "channel_mult": [c // channels[0] for c in channels],
        "num_res_blocks": [per_level] * levels,
        "transformer_depth": [d for d in depth for _ in range(per_level)],
        # Listed in input order (ComfyUI's UNetModel pops it from the end): each level's up path has
        # one block more than its down path.
        "transformer_depth_output": [d for d in depth for _ in range(per_level + 1)],
        "transformer_depth_middle": middle,
        "context_dim": config.get("cross_attention_dim"),
        "use_linear_in_transformer": bool(config.get("use_linear_projection", False)),
        "adm_in_channels": config.get("projection_class_embeddings_input_dim"),
        "use_spatial_transformer": True,
        "legacy": False,
        "use_temporal_resblock": False,
        "use_temporal_attention": False,
    }
    return {**config, **comfy}


class DiffusionModel:
    """A UNet with its sampling schedule and latent format, shared by every ModelPatcher clone."""

    def __new__(cls, *args: Any, **kwargs: Any) -> DiffusionModel:
        from engine.diffusion.model_configs import BASE

        # A pack building ComfyUI's BaseModel from a model config (Easy-Use's Kolors loader subclasses
        # model_base.SDXL so) gets told why, whichever subclass's __init__ would run.
        if (args and isinstance(args[0], BASE)) or isinstance(kwargs.get("model_config"), BASE):
            raise NotImplementedError(
                f"comfy.model_base.{cls.__name__}(model_config, ...): Loom does not build ComfyUI's "
                "comfy.ldm networks (openaimodel.UNetModel) from a model config; its models wrap "
                "diffusers modules loaded from files"
            )
        return super().__new__(cls)

    def __init__(self, unet: Any, model_sampling: Any, family: str, latent_format: Any) -> None:
        from engine.diffusion import model_configs

        self.diffusion_model = unet
        self.model_sampling = model_sampling
        self.family = family
        self.latent_format = latent_format
        self.model_type = _PREDICTION_TO_TYPE.get(
            getattr(model_sampling, "prediction_type", "eps"), ModelType.EPS
        )
        config = dict(unet.config) if hasattr(unet, "config") else {}
        if family in model_configs.FLOW_FAMILIES:
            unet_config = model_configs.flow_unet_config(family, config)
        else:
            unet_config = comfy_unet_config(config) if config else {}
        # ComfyUI's comfy.supported_models config of this model (SD15, SDXL, Flux, ...).
        self.model_config = model_configs.model_config(family, unet_config, latent_format)
        self.current_patcher: Any = None

    @property
    def device(self) -> Any:
        return next(self.diffusion_model.parameters()).device

    def get_dtype(self) -> Any:
        return next(self.diffusion_model.parameters()).dtype

    def state_dict(self) -> dict[str, Any]:
        """The UNet's weights under ComfyUI's names (`diffusion_model.input_blocks.…`)."""
        from engine.diffusion.weights import comfy_names

        own = dict(self.diffusion_model.state_dict(keep_vars=False))
        return {key: own[name] for key, name in comfy_names(self.diffusion_model).items()}

    def memory_required(self, input_shape: Any, cond_shapes: Any = None) -> int:
        import math

        area = int(input_shape[0]) * math.prod(int(s) for s in input_shape[2:])
        return area * 4 * 1024 * self.get_dtype().itemsize

    def scale_latent_inpaint(self, sigma: Any, noise: Any, latent_image: Any, **kwargs: Any) -> Any:
        """The clean latent re-noised to `sigma` (one per batch entry), as ComfyUI's inpainting does."""
        shape = [sigma.shape[0]] + [1] * (noise.ndim - 1)
        return self.model_sampling.noise_scaling(sigma.reshape(shape), noise, latent_image)

    def process_latent_in(self, latent: Any) -> Any:
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent: Any) -> Any:
        return self.latent_format.process_out(latent)

    def apply_model(
        self,
        x: Any,
        t: Any,
        c_concat: Any = None,
        c_crossattn: Any = None,
        control: Any = None,
        transformer_options: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Denoised prediction at noise level `t` (a sigma per batch entry, as in ComfyUI). `control`
        is ComfyUI's ControlNet/T2I-Adapter residual dict (see engine.diffusion.controlnet); `y` is the
        class-embedding (ADM) input of UNets that take one (SD2.1 unCLIP)."""
        import torch

        sampling = self.model_sampling
        x_in = sampling.calculate_input(t, x)
        if c_concat is not None:
            x_in = torch.cat([x_in, c_concat.to(x_in)], dim=1)
        dtype = self.get_dtype()
        options = transformer_options if transformer_options is not None else {}
        extra = {"added_cond_kwargs": added_cond_kwargs} if added_cond_kwargs is not None else {}
        y = kwargs.get("y")
        context = c_crossattn.to(dtype)
        timestep = sampling.timestep(t).float()
        args = (x_in.to(dtype), timestep, context, y, control, options)
        output = self.through_wrappers(self.unet_forward, options, *args, **extra)
        return sampling.calculate_denoised(t, output.float(), x)

    def through_wrappers(self, forward: Any, options: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """`forward(*args, **kwargs)` inside the DIFFUSION_MODEL wrappers of `options`, as ComfyUI's
        model classes run their `_forward` (a wrapper's `executor.class_obj` is the network)."""
        from engine.diffusion.patcher_extension import WrapperExecutor, WrappersMP, get_all_wrappers

        wrappers = get_all_wrappers(WrappersMP.DIFFUSION_MODEL, options)
        executor = WrapperExecutor.new_class_executor(forward, self.diffusion_model, wrappers)
        return executor.execute(*args, **kwargs)

    def unet_forward(
        self,
        x: Any,
        timesteps: Any,
        context: Any,
        y: Any = None,
        control: Any = None,
        transformer_options: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The UNet's raw prediction, called as ComfyUI calls its `diffusion_model` (what a
        DIFFUSION_MODEL wrapper continues with): the scaled model input, the model's timesteps,
        the cross-attention context, the ADM/class input `y`, the control residual dict and
        transformer_options. SDXL's pooled text and size vectors come as diffusers'
        `added_cond_kwargs`, where ComfyUI passes them folded into `y`; other keyword arguments
        (inputs of ComfyUI's video UNets) are not used by diffusers' UNet."""
        del kwargs
        from engine.diffusion import unet_hooks
        from engine.diffusion.controlnet import unet_residuals
        from engine.diffusion.devices import manager

        unet = self.diffusion_model
        unet_hooks.install(unet)
        dtype = self.get_dtype()
        with unet_hooks.active(transformer_options if transformer_options is not None else {}, x):
            return manager().runnable(unet)(
                x,
                timesteps,
                encoder_hidden_states=context,
                added_cond_kwargs=added_cond_kwargs,
                class_labels=y.to(dtype) if y is not None else None,
                return_dict=False,
                **unet_residuals(control, dtype),
            )[0]


class SD15(DiffusionModel):
    """An SD1.x UNet (ComfyUI's model_base.SD15 name, for packs' isinstance checks)."""


class SD20(DiffusionModel):
    """An SD2.x UNet."""


class SD21UNCLIP(DiffusionModel):
    """An SD2.1 unCLIP UNet: its class embedding takes a noise-augmented CLIP image embedding joined with
    the embedding of the noise level (engine.diffusion.unclip)."""

    def __init__(self, unet: Any, model_sampling: Any, family: str, latent_format: Any) -> None:
        from engine.diffusion.unclip import CLIPEmbeddingNoiseAugmentation

        super().__init__(unet, model_sampling, family, latent_format)
        self.adm_channels = int(unet.config.projection_class_embeddings_input_dim)
        self.noise_augmentor = CLIPEmbeddingNoiseAugmentation(self.adm_channels // 2)


class _Revision(DiffusionModel):
    """SDXL's UNets: an unCLIP conditioning (SDXL "revision") replaces the pooled text embedding."""

    def __init__(self, unet: Any, model_sampling: Any, family: str, latent_format: Any) -> None:
        from engine.diffusion.unclip import CLIPEmbeddingNoiseAugmentation

        super().__init__(unet, model_sampling, family, latent_format)
        config = getattr(unet, "config", None)
        adm = getattr(config, "projection_class_embeddings_input_dim", None) or 2816
        extras = 5 if family == "sdxl_refiner" else 6
        pooled = adm - extras * int(getattr(config, "addition_time_embed_dim", None) or 256)
        self.noise_augmentor = CLIPEmbeddingNoiseAugmentation(pooled)  # 1280 wide: CLIP-G's embedding


class SDXL(_Revision):
    """An SDXL base UNet."""


class SDXLRefiner(_Revision):
    """An SDXL refiner UNet."""


class SD15_instructpix2pix(SD15):
    """An SD1.x InstructPix2Pix UNet (8 input channels: the latent and the source image's)."""


class SDXL_instructpix2pix(SDXL):
    """An SDXL InstructPix2Pix UNet (8 input channels)."""


_FAMILY_CLASSES: dict[str, type[DiffusionModel]] = {
    "sd1": SD15,
    "sd2": SD20,
    "sdxl": SDXL,
    "sdxl_refiner": SDXLRefiner,
}


def _model_class(unet: Any, family: str) -> type[DiffusionModel]:
    config = getattr(unet, "config", None)
    if family == "sd2" and getattr(config, "class_embed_type", None) == "projection":
        return SD21UNCLIP
    if getattr(config, "in_channels", 4) == 8 and family in ("sd1", "sdxl"):
        return SD15_instructpix2pix if family == "sd1" else SDXL_instructpix2pix
    return _FAMILY_CLASSES.get(family, DiffusionModel)


def diffusion_model(unet: Any, model_sampling: Any, family: str, latent_format: Any) -> DiffusionModel:
    """The DiffusionModel subclass of `family` and UNet (the base class for families without one)."""
    return _model_class(unet, family)(unet, model_sampling, family, latent_format)
