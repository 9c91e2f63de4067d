"""RenormCFG (ComfyUI's `comfy_extras.nodes_lumina2`): Lumina 2's guidance with a truncation and a cap.

While sigma is below `cfg_trunc` the guided prediction is uncond + scale · (cond − uncond) over the model's
input channels, its norm (over each sample) capped at `renorm_cfg` times the conditional prediction's when
`renorm_cfg` > 0; from `cfg_trunc` up the conditional prediction is used alone. Channels past the model's
input channels come from the conditional prediction.
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node


def _channels(model: Any, fallback: int) -> int:
    """The diffusion model's input channels (a diffusers config's, or a ComfyUI-style attribute)."""
    network = getattr(getattr(model, "model", None), "diffusion_model", None)
    config = getattr(network, "config", None)
    if config is not None and hasattr(config, "in_channels"):
        return int(config.in_channels)
    return int(getattr(network, "in_channels", fallback))


def _renorm_cfg(model: Any, cfg_trunc: float, renorm_cfg: float) -> Any:
    def renorm(args: dict[str, Any]) -> Any:
        import torch

        cond, uncond = args["cond_denoised"], args["uncond_denoised"]
        channels = _channels(model, cond.shape[1])
        cond_eps, rest = cond[:, :channels], cond[:, channels:]
        if args["timestep"][0] < cfg_trunc:
            guided = uncond[:, :channels] + args["cond_scale"] * (cond_eps - uncond[:, :channels])
            if float(renorm_cfg) > 0.0:
                dims = tuple(range(1, cond_eps.ndim))
                limit = torch.linalg.vector_norm(cond_eps, dim=dims, keepdim=True) * float(renorm_cfg)
                norm = torch.linalg.vector_norm(guided, dim=dims, keepdim=True)
                # per sample (ComfyUI's single comparison fails on a batch of several)
                guided = torch.where(norm >= limit, guided * (limit / norm), guided)
        else:
            guided = cond_eps
        return args["input"] - torch.cat([guided, rest], dim=1)

    return renorm


class RenormCFG(Node):
    """Lumina 2's classifier-free guidance: off above sigma `cfg_trunc`, and the guided prediction's norm
    capped at `renorm_cfg` times the conditional one's (0: no cap)."""

    category = "advanced/model"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        cfg_trunc: Annotated[
            float, Input("Guidance applies only below this sigma.", min=0.0, max=100.0, step=0.01)
        ] = 100.0,
        renorm_cfg: Annotated[
            float,
            Input("Cap on the guided norm, relative to the conditional one.", min=0.0, max=100.0, step=0.01),
        ] = 1.0,
    ) -> Model:
        patched = model.clone()
        patched.set_model_sampler_cfg_function(_renorm_cfg(patched, cfg_trunc, renorm_cfg))
        return patched
