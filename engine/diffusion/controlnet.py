"""CONTROL_NET: ControlNets and T2I-Adapters as they travel on CONDITIONING (ComfyUI's ControlBase API).

A control object sits on a conditioning entry under `"control"`. Apply nodes `copy()` it and call
`set_cond_hint(image, strength, (start_percent, end_percent), vae)`; a second apply on the same
conditioning chains through `set_previous_controlnet`. Before sampling Loom's guider calls
`pre_run(model, percent_to_sigma)`, which turns the percent range into sigmas; at each UNet call it
calls `get_control(x, sigma, c, batched_number, transformer_options)`, which returns ComfyUI's control
dict `{"input": [...], "middle": [...], "output": [...]}` (this object's residuals, times its strength,
summed with those of the objects before it in the chain), or None outside every object's range.
`DiffusionModel.apply_model` hands the dict to the diffusers UNet as its additional residuals.
After sampling the guider calls `cleanup()`.

The networks are diffusers modules (`ControlNetModel`, `T2IAdapter`), built by
`engine.models.controlnet` from the files people have.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

ControlDict = dict[str, list[Any]]


class StrengthType(enum.Enum):
    """How strength applies across the residuals (ComfyUI's StrengthType)."""

    CONSTANT = 1
    LINEAR_UP = 2


def broadcast_image_to(tensor: Any, target_batch_size: int, batched_number: int) -> Any:
    """Repeat a hint batch over a UNet batch made of `batched_number` cond/uncond chunks."""
    import torch

    if tensor.shape[0] == 1:
        return tensor
    per_batch = target_batch_size // batched_number
    tensor = tensor[:per_batch]
    if per_batch > tensor.shape[0]:
        whole, rest = divmod(per_batch, tensor.shape[0])
        tensor = torch.cat([tensor] * whole + [tensor[:rest]], dim=0)
    if tensor.shape[0] == target_batch_size:
        return tensor
    return torch.cat([tensor] * batched_number, dim=0)


def fit_image(image: Any, width: int, height: int, method: str) -> Any:
    """Centre-crop [B, C, H, W] to the target aspect ratio and resize it (ComfyUI's common_upscale)."""
    import torch.nn.functional as F

    old_height, old_width = image.shape[-2], image.shape[-1]
    old_aspect, new_aspect = old_width / old_height, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    image = image.narrow(-2, y, old_height - 2 * y).narrow(-1, x, old_width - 2 * x)
    options = {"align_corners": False} if method == "bilinear" else {}
    return F.interpolate(image, size=(height, width), mode=method, **options)


class ControlBase:
    """What every control object answers (ComfyUI's comfy.controlnet.ControlBase)."""

    def __init__(self) -> None:
        self.cond_hint_original: Any = None
        self.cond_hint: Any = None
        self.strength = 1.0
        self.timestep_percent_range: tuple[float, float] = (0.0, 1.0)
        self.latent_format: Any = None
        self.vae: Any = None
        self.global_average_pooling = False
        self.timestep_range: tuple[float, float] | None = None
        self.compression_ratio = 8
        self.upscale_algorithm = "nearest-exact"
        self.extra_args: dict[str, Any] = {}
        self.previous_controlnet: ControlBase | None = None
        self.extra_conds: list[str] = []
        self.strength_type = StrengthType.CONSTANT
        # The file it came from, for errors ("" when a pack builds one in memory).
        self.source = ""
        self.concat_mask = False
        self.extra_concat_orig: list[Any] = []
        self.extra_concat: Any = None
        self.extra_hooks: Any = None
        self.preprocess_image: Callable[[Any], Any] = _identity

    def set_cond_hint(
        self,
        cond_hint: Any,
        strength: float = 1.0,
        timestep_percent_range: tuple[float, float] = (0.0, 1.0),
        vae: Any = None,
        extra_concat: list[Any] | None = None,
    ) -> ControlBase:
        """Attach the hint image ([B, C, H, W], 0..1) with its strength and percent range."""
        self.cond_hint_original = cond_hint
        self.strength = strength
        self.timestep_percent_range = timestep_percent_range
        if self.latent_format is not None:
            self.vae = vae
        self.extra_concat_orig = list(extra_concat or [])
        return self

    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        """Turn the percent range into the sigmas between which this object acts (and down the chain)."""
        start, end = self.timestep_percent_range
        self.timestep_range = (percent_to_timestep_function(start), percent_to_timestep_function(end))
        if self.previous_controlnet is not None:
            self.previous_controlnet.pre_run(model, percent_to_timestep_function)

    def set_previous_controlnet(self, controlnet: ControlBase | None) -> ControlBase:
        self.previous_controlnet = controlnet
        return self

    def cleanup(self) -> None:
        if self.previous_controlnet is not None:
            self.previous_controlnet.cleanup()
        self.cond_hint = None
        self.extra_concat = None
        self.timestep_range = None

    def get_models(self) -> list[Any]:
        """The modules this chain runs (the guider places them on the compute device)."""
        return self.previous_controlnet.get_models() if self.previous_controlnet is not None else []

    def get_extra_hooks(self) -> list[Any]:
        out = [self.extra_hooks] if self.extra_hooks is not None else []
        if self.previous_controlnet is not None:
            out += self.previous_controlnet.get_extra_hooks()
        return out

    def copy_to(self, other: ControlBase) -> None:
        other.source = self.source
        other.cond_hint_original = self.cond_hint_original
        other.strength = self.strength
        other.timestep_percent_range = self.timestep_percent_range
        other.global_average_pooling = self.global_average_pooling
        other.compression_ratio = self.compression_ratio
        other.upscale_algorithm = self.upscale_algorithm
        other.latent_format = self.latent_format
        other.extra_args = self.extra_args.copy()
        other.vae = self.vae
        other.extra_conds = self.extra_conds.copy()
        other.strength_type = self.strength_type
        other.concat_mask = self.concat_mask
        other.extra_concat_orig = self.extra_concat_orig.copy()
        other.extra_hooks = self.extra_hooks
        other.preprocess_image = self.preprocess_image

    def copy(self) -> ControlBase:
        raise NotImplementedError(f"{type(self).__name__} does not define copy()")

    def inference_memory_requirements(self, dtype: Any) -> int:
        if self.previous_controlnet is not None:
            return self.previous_controlnet.inference_memory_requirements(dtype)
        return 0

    def set_extra_arg(self, argument: str, value: Any = None) -> None:
        self.extra_args[argument] = value

    def get_control(
        self, x_noisy: Any, t: Any, cond: dict[str, Any], batched_number: int, transformer_options: Any = None
    ) -> ControlDict | None:
        raise NotImplementedError(f"{type(self).__name__} does not define get_control()")

    def previous_control(
        self, x_noisy: Any, t: Any, cond: dict[str, Any], batched_number: int, transformer_options: Any
    ) -> ControlDict | None:
        if self.previous_controlnet is None:
            return None
        return self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)

    def out_of_range(self, t: Any) -> bool:
        """Whether sigma `t` lies outside this object's (start, end) range, i.e. it skips this step."""
        if self.timestep_range is None:
            return False
        sigma = float(t.reshape(-1)[0])
        return sigma > self.timestep_range[0] or sigma < self.timestep_range[1]

    def control_merge(
        self, control: ControlDict, control_prev: ControlDict | None, output_dtype: Any
    ) -> ControlDict:
        """Scale this object's residuals by its strength and add the previous objects' residuals."""
        import torch

        out: ControlDict = {"input": [], "middle": [], "output": []}
        for key, residuals in control.items():
            scaled: dict[int, Any] = {}  # residuals shared between positions are scaled once
            for index, x in enumerate(residuals):
                if x is not None:
                    if id(x) in scaled:
                        x = scaled[id(x)]
                    else:
                        original = id(x)
                        if self.global_average_pooling:
                            x = torch.mean(x, dim=(2, 3), keepdim=True).repeat(1, 1, x.shape[2], x.shape[3])
                        if self.strength_type == StrengthType.CONSTANT:
                            x = x * self.strength
                        else:
                            x = x * self.strength ** float(len(residuals) - index)
                        scaled[original] = x
                    if output_dtype is not None and x.dtype != output_dtype:
                        x = x.to(output_dtype)
                out.setdefault(key, []).append(x)
        if control_prev is not None:
            for key in ("input", "middle", "output"):
                mine = out[key]
                for index, prev in enumerate(control_prev.get(key, [])):
                    if index >= len(mine):
                        mine.append(prev)
                    elif prev is not None:
                        mine[index] = prev if mine[index] is None else prev + mine[index]
        return out


def _identity(image: Any) -> Any:
    return image


class ControlNet(ControlBase):
    """A ControlNet: a copy of the UNet's encoder whose per-resolution outputs are added to the UNet's
    skip connections and middle block (ComfyUI's comfy.controlnet.ControlNet over diffusers'
    ControlNetModel)."""

    def __init__(
        self,
        control_model: Any = None,
        global_average_pooling: bool = False,
        compression_ratio: int = 8,
        latent_format: Any = None,
        load_device: Any = None,
        manual_cast_dtype: Any = None,
        extra_conds: list[str] | None = None,
        strength_type: StrengthType = StrengthType.CONSTANT,
        concat_mask: bool = False,
        preprocess_image: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.control_model = control_model
        self.load_device = load_device
        self.compression_ratio = compression_ratio
        self.global_average_pooling = global_average_pooling
        self.model_sampling_current: Any = None
        self.manual_cast_dtype = manual_cast_dtype
        self.latent_format = latent_format
        self.extra_conds += ["y"] if extra_conds is None else extra_conds
        self.strength_type = strength_type
        self.concat_mask = concat_mask
        self.preprocess_image = preprocess_image

    def get_control(
        self, x_noisy: Any, t: Any, cond: dict[str, Any], batched_number: int, transformer_options: Any = None
    ) -> ControlDict | None:
        control_prev = self.previous_control(x_noisy, t, cond, batched_number, transformer_options)
        if self.out_of_range(t):
            return control_prev
        model = self.control_model
        dtype = next(model.parameters()).dtype
        self._prepare_hint(x_noisy, batched_number, dtype)
        sampling = self.model_sampling_current
        context = cond.get("crossattn_controlnet", cond["c_crossattn"])
        expected = getattr(model.config, "cross_attention_dim", None)
        if expected is not None and context.shape[-1] != expected:
            raise ValueError(
                f"the ControlNet {self.source or ''} takes text embeddings {expected} wide, the model gives "
                f"{context.shape[-1]}: it was made for another model family"
            )
        added = cond.get("added_cond_kwargs")
        if added is not None:  # SDXL's size hints, in the UNet's dtype; the ControlNet may keep another
            added = {k: v.to(x_noisy.device, dtype) for k, v in added.items()}
        down, mid = run_controlnet(
            model,
            sampling.calculate_input(t, x_noisy).to(dtype),
            sampling.timestep(t).float(),
            context.to(x_noisy.device, dtype),
            self.cond_hint,
            added,
            self.extra_args,
        )
        control = {"middle": [mid], "output": list(down)}
        return self.control_merge(control, control_prev, output_dtype=None)

    def _prepare_hint(self, x_noisy: Any, batched_number: int, dtype: Any) -> None:
        """Resize the hint to the latent's pixel size once per size; repeat it to the UNet batch."""
        height, width = x_noisy.shape[2] * self.compression_ratio, x_noisy.shape[3] * self.compression_ratio
        if self.cond_hint is None or tuple(self.cond_hint.shape[2:]) != (height, width):
            if self.latent_format is not None:
                raise ValueError(
                    "this ControlNet works on latents, which Loom's SD-family ControlNets do not; "
                    "it cannot be applied"
                )
            hint = fit_image(self.cond_hint_original.float(), width, height, self.upscale_algorithm)
            self.cond_hint = self.preprocess_image(hint).to(x_noisy.device, dtype)
        if x_noisy.shape[0] != self.cond_hint.shape[0]:
            self.cond_hint = broadcast_image_to(self.cond_hint, x_noisy.shape[0], batched_number)

    def copy(self) -> ControlNet:
        c = ControlNet(
            None,
            global_average_pooling=self.global_average_pooling,
            load_device=self.load_device,
            manual_cast_dtype=self.manual_cast_dtype,
        )
        c.control_model = self.control_model
        self.copy_to(c)
        return c

    def get_models(self) -> list[Any]:
        return super().get_models() + ([self.control_model] if self.control_model is not None else [])

    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        super().pre_run(model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling

    def cleanup(self) -> None:
        self.model_sampling_current = None
        super().cleanup()


def run_controlnet(
    model: Any,
    x_in: Any,
    timestep: Any,
    context: Any,
    hint: Any,
    added_cond_kwargs: dict[str, Any] | None,
    extra_args: dict[str, Any],
) -> tuple[list[Any], Any]:
    """One ControlNet forward: the residuals for each UNet skip connection and for the middle block."""
    if getattr(model, "union_forward", None) is not None:
        return model.union_forward(
            x_in, timestep, context, hint, added_cond_kwargs, extra_args.get("control_type", [])
        )
    down, mid = model(
        x_in,
        timestep,
        encoder_hidden_states=context,
        controlnet_cond=hint,
        added_cond_kwargs=added_cond_kwargs,
        return_dict=False,
    )
    return list(down), mid


class ControlLora(ControlNet):
    """A control-LoRA: the ControlNet is the sampled model's own UNet encoder with low-rank deltas (and
    some whole weights) from the file, built when sampling starts (ComfyUI's ControlLora)."""

    def __init__(self, control_weights: dict[str, Any], global_average_pooling: bool = False) -> None:
        ControlBase.__init__(self)
        self.control_weights = control_weights
        self.global_average_pooling = global_average_pooling
        self.control_model = None
        self.load_device = None
        self.manual_cast_dtype = None
        self.model_sampling_current = None
        self.extra_conds += ["y"]

    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        from engine.diffusion.devices import manager
        from engine.models.controlnet import controlnet_from_lora

        super().pre_run(model, percent_to_timestep_function)
        self.control_model = controlnet_from_lora(self.control_weights, model)
        manager().use(self.control_model)

    def copy(self) -> ControlLora:
        c = ControlLora(self.control_weights, global_average_pooling=self.global_average_pooling)
        self.copy_to(c)
        return c

    def cleanup(self) -> None:
        self.control_model = None
        super().cleanup()

    def get_models(self) -> list[Any]:
        return ControlBase.get_models(self)

    def inference_memory_requirements(self, dtype: Any) -> int:
        params = sum(t.numel() for t in self.control_weights.values() if hasattr(t, "numel"))
        return params * dtype.itemsize + ControlBase.inference_memory_requirements(self, dtype)


def unet_residuals(control: ControlDict | None, dtype: Any) -> dict[str, Any]:
    """ComfyUI's control dict as keyword arguments of diffusers' UNet2DConditionModel: ControlNet
    residuals ("output", one per skip connection, and "middle") become down/mid block additional
    residuals; adapter features ("input", and "middle" when there is no ControlNet) become the
    intra-block residuals, which diffusers adds where ComfyUI's input blocks add them."""
    if not control:
        return {}
    kwargs: dict[str, Any] = {}
    outputs = [x for x in control.get("output", []) if x is not None]
    middle = [x for x in control.get("middle", []) if x is not None]
    inputs = [x.to(dtype) for x in reversed(control.get("input", [])) if x is not None]
    if outputs:
        kwargs["down_block_additional_residuals"] = tuple(x.to(dtype) for x in outputs)
        kwargs["mid_block_additional_residual"] = middle[0].to(dtype) if middle else None
        if kwargs["mid_block_additional_residual"] is None:
            raise ValueError("a ControlNet's residuals came without the middle block's")
    elif middle:
        inputs += [middle[0].to(dtype)]
    if inputs:
        kwargs["down_intrablock_additional_residuals"] = inputs
    return kwargs
