"""ControlNets of the flow transformers (SD3/SD3.5, Flux.1, Qwen-Image), as ComfyUI 0.3.64 runs them.

They travel on CONDITIONING like the SD-family ControlNets (`engine.diffusion.controlnet`): the apply
nodes copy them, chain them and give them strength and a percent range. What differs:
- the hint is a latent: the hint image is fitted to the sampled latent's pixel size, encoded by the VAE
  given to the apply node and normalised by the ControlNet's latent format; an inpainting ControlNet
  gets the inverted mask, resized to the latent, as an extra channel (`extra_concat`). XLabs' Flux
  ControlNets (no latent format) take the fitted image itself and encode it with their own convolutions;
- the network (a module of `engine.models.controlnet_flow`) returns ComfyUI's control dict, one residual
  per block of the sampled model: `"output"` for SD3's joint blocks and Flux's single blocks, `"input"`
  for Flux's double blocks and Qwen-Image's blocks;
- `control_residuals` adds them to the image tokens after each block of the sampled diffusers
  transformer, as ComfyUI's MMDiT, Flux and Qwen-Image models do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from engine.diffusion.batching import repeat_to_batch
from engine.diffusion.controlnet import ControlDict, ControlNet, _identity, broadcast_image_to, fit_image

# Which control list each block list of the sampled transformer takes.
RESIDUAL_LISTS = {
    "sd3": (("transformer_blocks", "output"),),
    "flux": (("transformer_blocks", "input"), ("single_transformer_blocks", "output")),
    "qwen_image": (("transformer_blocks", "input"),),
}
FAMILY_NAMES = {"sd3": "SD3/SD3.5", "flux": "Flux.1", "qwen_image": "Qwen-Image"}


class FlowControlNet(ControlNet):
    """A ControlNet for a flow transformer of `family`, its hint encoded to latents by the VAE."""

    def __init__(
        self,
        control_model: Any,
        family: str,
        latent_format: Any,
        concat_mask: bool = False,
        preprocess_image: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__(
            control_model,
            compression_ratio=1 if latent_format is not None else 8,
            latent_format=latent_format,
            concat_mask=concat_mask,
            preprocess_image=preprocess_image,
            extra_conds=[],
        )
        self.family = family
        self.main_model: Any = None
        self._hint_size: tuple[int, int] | None = None

    def copy(self) -> FlowControlNet:
        c = FlowControlNet(self.control_model, self.family, self.latent_format)
        self.copy_to(c)
        c.family = self.family
        return c

    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        family = getattr(model, "family", None)
        if family != self.family:
            raise ValueError(
                f"the ControlNet {self.source or ''} is a {FAMILY_NAMES[self.family]} ControlNet; the model "
                f"being sampled is {family}: load the ControlNet made for this model"
            )
        super().pre_run(model, percent_to_timestep_function)
        self.main_model = model.diffusion_model
        check = getattr(self.control_model, "check_main_model", None)  # networks that run on the model's
        if check is not None:
            check(self.main_model, self.source or "")

    def cleanup(self) -> None:
        self.main_model = None
        self._hint_size = None
        super().cleanup()

    def get_control(
        self, x_noisy: Any, t: Any, cond: dict[str, Any], batched_number: int, transformer_options: Any = None
    ) -> ControlDict | None:
        control_prev = self.previous_control(x_noisy, t, cond, batched_number, transformer_options)
        if self.out_of_range(t):
            return control_prev
        model = self.control_model
        dtype = next(model.parameters()).dtype
        self._prepare_latent_hint(x_noisy, batched_number, dtype)
        sampling = self.model_sampling_current
        context = cond.get("crossattn_controlnet", cond["c_crossattn"]).to(x_noisy.device, dtype)
        control = model(
            sampling.calculate_input(t, x_noisy).to(dtype),
            sampling.timestep(t).float(),
            context,
            self.cond_hint,
            cond.get("added_cond_kwargs") or {},
            self.extra_args,
            self.main_model,
        )
        return self.control_merge(control, control_prev, output_dtype=None)

    def _prepare_latent_hint(self, x_noisy: Any, batched_number: int, dtype: Any) -> None:
        """Encode the fitted hint once per latent size (with the mask channel of inpainting ones)."""
        import torch

        if self.latent_format is None:  # XLabs' Flux ControlNets take the fitted image itself
            self._prepare_hint(x_noisy, batched_number, dtype)
            return
        if self.vae is None:
            raise ValueError(
                f"the ControlNet {self.source or ''} takes its hint as latents and needs a VAE: connect one "
                "to the vae input of Apply ControlNet"
            )
        size = (int(x_noisy.shape[2]), int(x_noisy.shape[3]))
        if self.cond_hint is None or self._hint_size != size:
            ratio = self.vae.spacial_compression_encode()
            pixels = fit_image(
                self.cond_hint_original.float(), size[1] * ratio, size[0] * ratio, self.upscale_algorithm
            )
            latent = self.vae.encode(self.preprocess_image(pixels).movedim(1, -1))
            latent = self.latent_format.process_in(latent.to(x_noisy.device).float())
            extra = []
            for c in self.extra_concat_orig:
                c = fit_image(
                    c.float().to(latent.device), latent.shape[-1], latent.shape[-2], self.upscale_algorithm
                )
                extra.append(repeat_to_batch(c, latent.shape[0]))
            self.cond_hint = torch.cat([latent, *extra], dim=1).to(x_noisy.device, dtype)
            self._hint_size = size
        if x_noisy.shape[0] != self.cond_hint.shape[0]:
            self.cond_hint = broadcast_image_to(self.cond_hint, x_noisy.shape[0], batched_number)


def check_controls(controls: list[Any], model: Any) -> None:
    """A flow model takes only flow ControlNets, a UNet only the SD-family ones: say which does not fit."""
    flow_model = getattr(model, "added_conditions", None) is not None
    for control in controls:
        chain = control
        while chain is not None:
            if isinstance(chain, FlowControlNet) != flow_model or (
                flow_model and chain.family != getattr(model, "family", None)
            ):
                name = getattr(chain, "source", "") or type(chain).__name__
                what = FAMILY_NAMES.get(getattr(chain, "family", ""), "SD1.x/SD2.x/SDXL")
                raise ValueError(
                    f"the control model {name} is made for {what} models; the model being sampled is "
                    f"{getattr(model, 'family', 'another family')}: apply a ControlNet made for this model"
                )
            chain = chain.previous_controlnet


def slice_control(control: ControlDict | None, rows: Any) -> ControlDict | None:
    """The control residuals of some rows of the batch (Flux runs reference groups separately)."""
    if not control:
        return control
    return {key: [None if x is None else x[rows] for x in values] for key, values in control.items()}


@contextlib.contextmanager
def control_residuals(transformer: Any, family: str, control: ControlDict | None) -> Iterator[None]:
    """Add the control dict's residuals to the image tokens after each block of `transformer` (the first
    tokens: reference latents that follow them get none), for the duration of one model call."""
    if not control:
        yield
        return
    wrapped: list[tuple[Any, Any]] = []
    try:
        for attribute, key in RESIDUAL_LISTS.get(family, ()):
            residuals = control.get(key) or []
            for block, residual in zip(getattr(transformer, attribute), residuals, strict=False):
                if residual is None:
                    continue
                wrapped.append((block, vars(block).get("forward")))
                block.forward = _adding(block.forward, residual)
        yield
    finally:
        for block, previous in reversed(wrapped):
            if previous is None:
                del block.forward
            else:
                block.forward = previous


def _adding(inner: Callable[..., Any], residual: Any) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        txt, img = out if isinstance(out, tuple) else (None, out)
        tokens = residual.shape[1]
        img = img.clone()
        img[:, :tokens] += residual.to(img.dtype)
        return (txt, img) if isinstance(out, tuple) else img

    return forward
