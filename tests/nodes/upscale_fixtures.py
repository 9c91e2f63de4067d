"""Random-weight stand-ins for upscale model files, in the key layouts that circulate, at tiny widths.

Written from the published layouts (ESRGAN's original `model.N` sequential form, BasicSR's RRDBNet
`conv_first`/`body.N.rdbM` form used by RealESRGAN, and RealESRGAN's compact SRVGGNet `body.N` form);
each entry is (key, shape). Weights are small so the random models produce images in range.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

GROWTH = 32  # RRDB growth channels: fixed at 32 in every released ESRGAN model


def _conv(key: str, out_ch: int, in_ch: int) -> dict[str, tuple[int, ...]]:
    return {f"{key}.weight": (out_ch, in_ch, 3, 3), f"{key}.bias": (out_ch,)}


def _rdb_convs(nf: int) -> list[tuple[int, int]]:
    """(out, in) channels of the five convolutions of a residual dense block."""
    return [(GROWTH, nf + i * GROWTH) for i in range(4)] + [(nf, nf + 4 * GROWTH)]


def esrgan_old_layout(nf: int = 8, blocks: int = 1) -> dict[str, tuple[int, ...]]:
    """ESRGAN ×4, original layout: model.0 conv, model.1.sub.* trunk, model.3/6 upconvs, model.8/10."""
    shapes = _conv("model.0", nf, 3)
    for b in range(blocks):
        for r in range(1, 4):
            for c, (out_ch, in_ch) in enumerate(_rdb_convs(nf), start=1):
                shapes |= _conv(f"model.1.sub.{b}.RDB{r}.conv{c}.0", out_ch, in_ch)
    shapes |= _conv(f"model.1.sub.{blocks}", nf, nf)
    for index in (3, 6, 8):
        shapes |= _conv(f"model.{index}", nf, nf)
    return shapes | _conv("model.10", 3, nf)


def esrgan_new_layout(nf: int = 8, blocks: int = 1) -> dict[str, tuple[int, ...]]:
    """RealESRGAN ×4 (BasicSR RRDBNet): conv_first, body.N.rdbM.convK, conv_body, conv_up1/2, conv_hr,
    conv_last."""
    shapes = _conv("conv_first", nf, 3)
    for b in range(blocks):
        for r in range(1, 4):
            for c, (out_ch, in_ch) in enumerate(_rdb_convs(nf), start=1):
                shapes |= _conv(f"body.{b}.rdb{r}.conv{c}", out_ch, in_ch)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes |= _conv(name, nf, nf)
    return shapes | _conv("conv_last", 3, nf)


def compact_layout(nf: int = 8, convs: int = 2, scale: int = 2) -> dict[str, tuple[int, ...]]:
    """RealESRGAN compact (SRVGGNetCompact): body.0 conv, PReLU/conv pairs, a pixel-shuffle conv last."""
    shapes = _conv("body.0", nf, 3) | {"body.1.weight": (nf,)}
    for i in range(convs):
        shapes |= _conv(f"body.{2 + 2 * i}", nf, nf) | {f"body.{3 + 2 * i}.weight": (nf,)}
    return shapes | _conv(f"body.{2 + 2 * convs}", 3 * scale * scale, nf)


def write_standin(path: Path, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> Path:
    """Save random weights for `shapes`. The last convolution's bias is 0.5 so that ESRGAN's output
    (the image itself) sits mid-range instead of being clamped to black."""
    generator = torch.Generator().manual_seed(seed)
    last_bias = ([key for key in shapes if key.endswith(".bias")] or [""])[-1]
    tensors = {}
    for key, shape in shapes.items():
        if len(shape) == 1:  # PReLU slopes at their usual 0.25, biases zero
            value = torch.full(shape, 0.25) if not key.endswith(".bias") else torch.zeros(shape)
            if key == last_bias and shape[0] == 3:
                value = torch.full(shape, 0.5)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=generator) * (1.0 / fan_in**0.5)
        tensors[key] = value.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_swinir_standin(path: Path, seed: int = 0) -> Path:
    """A tiny lightweight SwinIR ×2 (pixel-shuffle-direct), saved as from a DataParallel wrapper (every
    key under `module.`, as some released SwinIR files are). Its buffers (relative position index,
    shifted-window attention mask) are computed, so the file comes from spandrel's own SwinIR class."""
    from spandrel.architectures.SwinIR import SwinIR

    import engine  # noqa: F401  (makes torchvision importable before spandrel imports it)

    torch.manual_seed(seed)
    net = SwinIR(
        img_size=16,
        embed_dim=12,
        depths=[2],
        num_heads=[2],
        window_size=4,
        mlp_ratio=2.0,
        upscale=2,
        upsampler="pixelshuffledirect",
        resi_connection="1conv",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"module.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path
