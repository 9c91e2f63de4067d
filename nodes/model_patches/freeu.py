"""FreeU and FreeU_V2: output-block patches that boost the UNet's backbone features and damp the low
frequencies of its skip connections, on the blocks with model_channels*4 and *2 channels."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node

FACTOR = {"min": 0.0, "max": 10.0, "step": 0.01}
B1 = "Backbone scale on the model_channels*4 blocks."
B2 = "Backbone scale on the model_channels*2 blocks."
S1 = "Skip low-frequency scale on the model_channels*4 blocks."
S2 = "Skip low-frequency scale on the model_channels*2 blocks."


def fourier_filter(x: Any, threshold: int, scale: float) -> Any:
    """Scale the centre (low frequencies) of x's shifted 2-D spectrum; torch.fft runs on the CPU where a
    device lacks it."""
    try:
        return _filtered(x, threshold, scale)
    except RuntimeError:
        return _filtered(x.cpu(), threshold, scale).to(x.device)


def _filtered(x: Any, threshold: int, scale: float) -> Any:
    import torch

    spectrum = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    height, width = spectrum.shape[-2:]
    mask = torch.ones(spectrum.shape, device=x.device)
    row, col = height // 2, width // 2
    mask[..., row - threshold : row + threshold, col - threshold : col + threshold] = scale
    back = torch.fft.ifftn(torch.fft.ifftshift(spectrum * mask, dim=(-2, -1)), dim=(-2, -1))
    return back.real.to(x.dtype)


def _scales(model: Any, b1: float, b2: float, s1: float, s2: float) -> dict[int, tuple[float, float]]:
    config = getattr(getattr(model.model, "model_config", None), "unet_config", None) or {}
    if "model_channels" not in config:
        raise ValueError("FreeU: input 'model' is not a UNet model (it has no model_channels)")
    channels = int(config["model_channels"])
    return {channels * 4: (b1, s1), channels * 2: (b2, s2)}


def _patch(scales: dict[int, tuple[float, float]], backbone: Any) -> Any:
    """An output-block patch: `backbone(h, b)` scales the first half of h's channels, the skip is filtered."""
    import torch

    def output_block_patch(h: Any, hsp: Any, transformer_options: dict[str, Any]) -> tuple[Any, Any]:
        scale = scales.get(int(h.shape[1]))
        if scale is None:
            return h, hsp
        half = h.shape[1] // 2
        h = torch.cat([backbone(h, scale[0])[:, :half], h[:, half:]], dim=1)
        return h, fourier_filter(hsp, threshold=1, scale=scale[1])

    return output_block_patch


def _plain(h: Any, b: float) -> Any:
    return h * b


def _structure_aware(h: Any, b: float) -> Any:
    """FreeU v2: the backbone scale grows with the channel-mean of h, normalised per sample to 0..1."""
    mean = h.mean(1, keepdim=True)
    flat = mean.view(mean.shape[0], -1)
    low = flat.min(dim=-1).values.view(-1, 1, 1, 1)
    high = flat.max(dim=-1).values.view(-1, 1, 1, 1)
    return h * ((b - 1) * (mean - low) / (high - low) + 1)


class FreeU(Node):
    """FreeU: scale the UNet decoder's backbone features and the low frequencies of its skips."""

    category = "model_patches/unet"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        b1: Annotated[float, Input(B1, **FACTOR)] = 1.1,
        b2: Annotated[float, Input(B2, **FACTOR)] = 1.2,
        s1: Annotated[float, Input(S1, **FACTOR)] = 0.9,
        s2: Annotated[float, Input(S2, **FACTOR)] = 0.2,
    ) -> Model:
        patched = model.clone()
        patched.set_model_output_block_patch(_patch(_scales(model, b1, b2, s1, s2), _plain))
        return patched


class FreeU_V2(Node):
    """FreeU v2: as FreeU, with the backbone scale weighted by each position's mean activation."""

    category = "model_patches/unet"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        b1: Annotated[float, Input(B1, **FACTOR)] = 1.3,
        b2: Annotated[float, Input(B2, **FACTOR)] = 1.4,
        s1: Annotated[float, Input(S1, **FACTOR)] = 0.9,
        s2: Annotated[float, Input(S2, **FACTOR)] = 0.2,
    ) -> Model:
        patched = model.clone()
        patched.set_model_output_block_patch(_patch(_scales(model, b1, b2, s1, s2), _structure_aware))
        return patched
