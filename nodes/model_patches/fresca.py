"""FreSca (ComfyUI's `comfy_extras.nodes_fresca`, after Huang et al., "FreSca: Unveiling the Scaling Space in
Diffusion Models"): the guidance (conditional minus unconditional prediction) is scaled separately below
and above a frequency cutoff before classifier-free guidance combines them. Chroma's examples use it."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node


def frequency_scaled(x: Any, scale_low: float, scale_high: float, cutoff: int) -> Any:
    """x [B, C, H, W] with its spatial spectrum scaled: `scale_low` within `cutoff` frequency indices of
    the centre of the shifted spectrum (in every spatial dimension), `scale_high` elsewhere."""
    import torch

    spectrum = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    scale = torch.full(spectrum.shape, scale_high, device=x.device)
    low = scale
    for dim in range(2, spectrum.ndim):
        centre = spectrum.shape[dim] // 2
        width = min(cutoff, centre)
        low = low.narrow(dim, centre - width, width * 2)
    low.fill_(scale_low)
    filtered = torch.fft.ifftn(torch.fft.ifftshift(spectrum * scale, dim=(-2, -1)), dim=(-2, -1)).real
    return filtered.to(x.dtype)


def _fresca(scale_low: float, scale_high: float, cutoff: int) -> Any:
    def pre_cfg(args: dict[str, Any]) -> list[Any]:
        outputs = args["conds_out"]
        if len(outputs) <= 1 or None in args["conds"][:2]:
            return list(outputs)
        cond, uncond = outputs[0], outputs[1]
        guidance = frequency_scaled(cond - uncond, scale_low, scale_high, cutoff)
        return [guidance + uncond, uncond, *outputs[2:]]

    return pre_cfg


class FreSca(Node):
    """Applies frequency-dependent scaling to the guidance."""

    display_name = "FreSca"
    category = "_for_testing"
    experimental = True

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        scale_low: Annotated[
            float, Input("Scaling factor for low-frequency components", min=0, max=10, step=0.01)
        ] = 1.0,
        scale_high: Annotated[
            float, Input("Scaling factor for high-frequency components", min=0, max=10, step=0.01)
        ] = 1.25,
        freq_cutoff: Annotated[
            int,
            Input(
                "Number of frequency indices around center to consider as low-frequency",
                min=1,
                max=10000,
                step=1,
            ),
        ] = 20,
    ) -> Model:
        patched = model.clone()
        patched.set_model_sampler_pre_cfg_function(_fresca(scale_low, scale_high, freq_cutoff))
        return patched
