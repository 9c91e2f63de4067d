"""Classifier-free guidance over CONDITIONING lists, with area conditioning.

CONDITIONING is ComfyUI's list of `[cond_tensor, options]` pairs; options may hold `pooled_output`,
`area` (height, width, y, x in latent pixels), `strength`, and SDXL's size hints. Every entry of the
positive and negative lists is predicted in one UNet batch per area shape (contexts of different
lengths are repeated to a common length, which leaves cross-attention unchanged); the entries of each
side are blended by their feathered area masks, then
    denoised = uncond + (cond - uncond) * cfg.
At cfg 1 the negative side is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.diffusion.handles import ModelHandle
from engine.sampling import Model

FEATHER = 8  # latent pixels over which an area's inner edges fade in


@dataclass
class _Entry:
    context: Any
    options: dict[str, Any]
    positive: bool


def guided_model(model: ModelHandle, positive: list[Any], negative: list[Any], cfg: float) -> Model:
    """The denoised-prediction callable samplers call, with CFG applied."""
    entries = [_Entry(c, o, True) for c, o in positive]
    if not math.isclose(cfg, 1.0):
        entries += [_Entry(c, o, False) for c, o in negative]

    def denoise(x: Any, sigma: Any, **_: Any) -> Any:
        cond, uncond = _predict_sides(model, entries, x, sigma)
        if uncond is None:
            return cond
        return uncond + (cond - uncond) * cfg

    return denoise


def _predict_sides(model: ModelHandle, entries: list[_Entry], x: Any, sigma: Any) -> tuple[Any, Any]:
    import torch

    sums = {True: torch.zeros_like(x), False: torch.zeros_like(x)}
    weights = {True: torch.full_like(x, 1e-37), False: torch.full_like(x, 1e-37)}
    for group in _group_by_area(entries, x):
        area = group[0][1]
        predictions = _run_unet(model, [entry for entry, _ in group], x, sigma, area)
        for (entry, area), prediction in zip(group, predictions.chunk(len(group)), strict=True):
            h, w, y, x0 = area
            mult = _area_weight(area, x) * entry.options.get("strength", 1.0)
            sums[entry.positive][:, :, y : y + h, x0 : x0 + w] += prediction * mult
            weights[entry.positive][:, :, y : y + h, x0 : x0 + w] += mult
    has_negative = any(not e.positive for e in entries)
    return sums[True] / weights[True], sums[False] / weights[False] if has_negative else None


def _area(entry: _Entry, x: Any) -> tuple[int, int, int, int]:
    height, width = x.shape[2], x.shape[3]
    if "area" not in entry.options:
        return (height, width, 0, 0)
    h, w, y, x0 = (int(v) for v in entry.options["area"])
    y, x0 = min(y, height - 1), min(x0, width - 1)
    return (max(1, min(h, height - y)), max(1, min(w, width - x0)), y, x0)


def _group_by_area(entries: list[_Entry], x: Any) -> list[list[tuple[_Entry, tuple[int, int, int, int]]]]:
    groups: dict[tuple[int, int, int, int], list[tuple[_Entry, tuple[int, int, int, int]]]] = {}
    for entry in entries:
        area = _area(entry, x)
        groups.setdefault(area, []).append((entry, area))
    return list(groups.values())


def _area_weight(area: tuple[int, int, int, int], x: Any) -> Any:
    """1 inside the area, fading in over FEATHER pixels along edges that are not the image border."""
    import torch

    h, w, y, x0 = area
    mult = torch.ones((1, 1, h, w), dtype=x.dtype, device=x.device)
    ramp = [(t + 1) / FEATHER for t in range(min(FEATHER, h, w))]
    for t, value in enumerate(ramp):
        if y > 0:
            mult[:, :, t, :] *= value
        if y + h < x.shape[2]:
            mult[:, :, h - 1 - t, :] *= value
        if x0 > 0:
            mult[:, :, :, t] *= value
        if x0 + w < x.shape[3]:
            mult[:, :, :, w - 1 - t] *= value
    return mult


def _common_length(contexts: list[Any]) -> list[Any]:
    lengths = [c.shape[1] for c in contexts]
    target = math.lcm(*lengths)
    return [c.repeat(1, target // c.shape[1], 1) for c in contexts]


def _run_unet(model: ModelHandle, entries: list[_Entry], x: Any, sigma: Any, area: tuple[int, ...]) -> Any:
    """One UNet call for all entries sharing an area; returns denoised predictions stacked by entry."""
    import torch

    h, w, y, x0 = area
    batch = x.shape[0]
    crop = x[:, :, y : y + h, x0 : x0 + w]
    x_all = crop.repeat(len(entries), 1, 1, 1)
    contexts = _common_length([e.context.to(x.device) for e in entries])
    context = torch.cat([c.expand(batch, -1, -1) if c.shape[0] == 1 else c for c in contexts])
    sigmas = sigma.reshape(-1).expand(x_all.shape[0]) if sigma.numel() == 1 else sigma.repeat(len(entries))
    added = _added_conditions(model, entries, crop, batch)

    sampling = model.sampling
    x_in = sampling.calculate_input(sigmas, x_all)
    timestep = sampling.timestep(sigmas).float()
    dtype = next(model.unet.parameters()).dtype
    output = model.unet(
        x_in.to(dtype),
        timestep,
        encoder_hidden_states=context.to(dtype),
        added_cond_kwargs=added,
        return_dict=False,
    )[0]
    return sampling.calculate_denoised(sigmas, output.float(), x_all)


def _added_conditions(
    model: ModelHandle, entries: list[_Entry], crop: Any, batch: int
) -> dict[str, Any] | None:
    """SDXL's pooled text embedding and size/crop time ids; None for SD1.x/SD2.x."""
    import torch

    if getattr(model.unet.config, "addition_embed_type", None) != "text_time":
        return None
    dtype = next(model.unet.parameters()).dtype
    pooled, time_ids = [], []
    for entry in entries:
        options = entry.options
        height, width = crop.shape[2] * 8, crop.shape[3] * 8
        sizes = [options.get("height", height), options.get("width", width)]
        sizes += [options.get("crop_h", 0), options.get("crop_w", 0)]
        if model.family == "sdxl_refiner":
            sizes.append(options.get("aesthetic_score", 6.0 if entry.positive else 2.5))
        else:
            sizes += [options.get("target_height", height), options.get("target_width", width)]
        pooled.append(options["pooled_output"].to(crop.device).expand(batch, -1))
        time_ids.append(torch.tensor([sizes], device=crop.device, dtype=torch.float32).expand(batch, -1))
    return {"text_embeds": torch.cat(pooled).to(dtype), "time_ids": torch.cat(time_ids).to(dtype)}
