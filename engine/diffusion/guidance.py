"""Classifier-free guidance over CONDITIONING lists, with area conditioning.

CONDITIONING is ComfyUI's list of `[cond_tensor, options]` pairs; options may hold `pooled_output`,
`area` (height, width, y, x in latent pixels, or `("percentage", h, w, y, x)` as fractions), `strength`,
`mask` with `mask_strength` and `set_area_to_bounds` (predict only on the mask's bounding box),
`start_percent`/`end_percent` (the part of the schedule where the entry applies), `concat_latent_image`
and `concat_mask` (the extra input channels of inpainting and InstructPix2Pix models), and SDXL's size
hints. Every active entry of the positive and negative lists is predicted in one UNet batch per area
shape (contexts of different lengths are repeated to a common length, which leaves cross-attention
unchanged); the entries of each side are blended by their masks (or feathered areas) times their
strengths, then
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
    # The option "mask" resized to the latent [B, h, w], made when the latent size is first seen.
    mask: Any = None


def guided_model(model: ModelHandle, positive: list[Any], negative: list[Any], cfg: float) -> Model:
    """The denoised-prediction callable samplers call, with CFG applied."""
    entries = [_Entry(c, o, True) for c, o in positive]
    if not math.isclose(cfg, 1.0):
        entries += [_Entry(c, o, False) for c, o in negative]
    has_negative = any(not e.positive for e in entries)
    by_size: dict[tuple[int, ...], list[_Entry]] = {}

    def denoise(x: Any, sigma: Any, **_: Any) -> Any:
        if tuple(x.shape[2:]) not in by_size:
            by_size[tuple(x.shape[2:])] = _with_opposite_areas(entries, x)
        active = [e for e in by_size[tuple(x.shape[2:])] if _active(model, e.options, sigma)]
        cond, uncond = _predict_sides(model, active, x, sigma, has_negative)
        if uncond is None:
            return cond
        return uncond + (cond - uncond) * cfg

    return denoise


def _active(model: ModelHandle, options: dict[str, Any], sigma: Any) -> bool:
    """Whether sigma lies in the entry's start_percent..end_percent part of the schedule."""
    if "start_percent" not in options and "end_percent" not in options:
        return True
    current = float(sigma.reshape(-1)[0])
    start = _percent_to_sigma(model.sampling, options.get("start_percent", 0.0))
    end = _percent_to_sigma(model.sampling, options.get("end_percent", 1.0))
    return end <= current <= start


def _percent_to_sigma(sampling: Any, percent: float) -> float:
    """ComfyUI's percent_to_sigma: 0 is the start of sampling (no limit), 1 its end (sigma 0)."""
    import torch

    custom = getattr(sampling, "percent_to_sigma", None)
    if custom is not None:
        return float(custom(percent))
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    return float(sampling.sigma(torch.tensor((1.0 - percent) * 999.0)))


def _predict_sides(
    model: ModelHandle, entries: list[_Entry], x: Any, sigma: Any, has_negative: bool
) -> tuple[Any, Any]:
    import torch

    sums = {True: torch.zeros_like(x), False: torch.zeros_like(x)}
    weights = {True: torch.full_like(x, 1e-37), False: torch.full_like(x, 1e-37)}
    for entry in entries:
        _resize_mask(entry, x)
    for group in _group_by_area(entries, x):
        area = group[0][1]
        predictions = _run_unet(model, [entry for entry, _ in group], x, sigma, area)
        for (entry, area), prediction in zip(group, predictions.chunk(len(group)), strict=True):
            h, w, y, x0 = area
            mult = _entry_weight(entry, area, x)
            sums[entry.positive][:, :, y : y + h, x0 : x0 + w] += prediction * mult
            weights[entry.positive][:, :, y : y + h, x0 : x0 + w] += mult
    return sums[True] / weights[True], sums[False] / weights[False] if has_negative else None


def _resize_mask(entry: _Entry, x: Any) -> None:
    """Resize the entry's mask to the latent once (bilinear, as ComfyUI does before sampling)."""
    import torch.nn.functional as F

    mask = entry.options.get("mask")
    if mask is None or (entry.mask is not None and entry.mask.shape[-2:] == x.shape[2:]):
        return
    mask = mask.reshape(-1, mask.shape[-2], mask.shape[-1]).to(x.device, x.dtype)
    if mask.shape[-2:] != x.shape[2:]:
        mask = F.interpolate(mask.unsqueeze(1), size=x.shape[2:], mode="bilinear").squeeze(1)
    entry.mask = mask


def _entry_weight(entry: _Entry, area: tuple[int, int, int, int], x: Any) -> Any:
    """How much the entry's prediction counts at each pixel of its area: its mask (times mask_strength)
    or, without a mask, 1 fading in at the area's inner edges; times its strength."""
    strength = entry.options.get("strength", 1.0)
    if entry.mask is None:
        return _area_weight(area, x) * strength
    h, w, y, x0 = area
    mask = entry.mask[: x.shape[0], y : y + h, x0 : x0 + w] * entry.options.get("mask_strength", 1.0)
    if mask.shape[0] < x.shape[0]:
        mask = mask.repeat(x.shape[0] // mask.shape[0], 1, 1)
    return mask.unsqueeze(1) * strength


def _area(entry: _Entry, x: Any) -> tuple[int, int, int, int]:
    """The entry's area in latent pixels, clipped to the latent; the whole latent if it has none."""
    height, width = x.shape[2], x.shape[3]
    area = _resolved_area(entry, x)
    if area is None:
        return (height, width, 0, 0)
    h, w, y, x0 = area
    y, x0 = min(y, height - 1), min(x0, width - 1)
    return (max(1, min(h, height - y)), max(1, min(w, width - x0)), y, x0)


def _resolved_area(entry: _Entry, x: Any) -> tuple[int, int, int, int] | None:
    """(h, w, y, x) in latent pixels from a pixel area, a percentage area or the mask's bounds."""
    area = entry.options.get("area")
    if entry.options.get("set_area_to_bounds") and entry.mask is not None:
        area = _mask_bounds(entry.mask)
    if area is None:
        return None
    if area[0] == "percentage":
        height, width = x.shape[2], x.shape[3]
        _, h_part, w_part, y_part, x_part = area
        area = (
            max(1, round(h_part * height)),
            max(1, round(w_part * width)),
            round(y_part * height),
            round(x_part * width),
        )
    h, w, y, x0 = (int(v) for v in area)
    return (h, w, y, x0)


# What an entry predicts with (ComfyUI's "model conds"), as opposed to where and when it applies.
MODEL_CONDITION_KEYS = frozenset(
    {
        "pooled_output",
        "width",
        "height",
        "crop_w",
        "crop_h",
        "target_width",
        "target_height",
        "aesthetic_score",
        "concat_latent_image",
        "concat_mask",
    }
)


def _with_opposite_areas(entries: list[_Entry], x: Any) -> list[_Entry]:
    """ComfyUI's rule that every area has an opposite one: for each entry with an area, the other side
    (when it is used) gets a copy of its smallest entry covering that area, placed like the entry."""
    for entry in entries:
        _resize_mask(entry, x)
    sides = {side: [e for e in entries if e.positive == side] for side in (True, False)}
    if not sides[False]:
        return entries
    for side in (True, False):
        index = 0
        while index < len(sides[side]):  # grows: copies placed on this side are looked at too
            copy = _same_area_copy(sides[not side], sides[side][index], x)
            if copy is not None:
                sides[not side].append(copy)
            index += 1
    return sides[True] + sides[False]


def _same_area_copy(candidates: list[_Entry], entry: _Entry, x: Any) -> _Entry | None:
    area = _resolved_area(entry, x)
    if area is None:
        return None
    smallest: _Entry | None = None
    smallest_area: tuple[int, int, int, int] | None = None
    for other in candidates:
        other_area = _resolved_area(other, x)
        if other_area is None:
            if smallest is None:
                smallest = other
        elif _inside(area, other_area) and (
            smallest is None
            or smallest_area is None
            or math.prod(smallest_area[:2]) > math.prod(other_area[:2])
        ):
            smallest, smallest_area = other, other_area
    if smallest is None or smallest_area == area:
        return None
    options = {k: v for k, v in entry.options.items() if k not in MODEL_CONDITION_KEYS}
    options.update({k: v for k, v in smallest.options.items() if k in MODEL_CONDITION_KEYS})
    return _Entry(smallest.context, options, smallest.positive, entry.mask)


def _inside(area: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    h, w, y, x0 = area
    outer_h, outer_w, outer_y, outer_x = outer
    return y >= outer_y and x0 >= outer_x and y + h <= outer_y + outer_h and x0 + w <= outer_x + outer_w


def _mask_bounds(mask: Any) -> tuple[int, int, int, int]:
    """The bounding box (at least 8×8) of where any mask of the batch is non-zero; (8, 8, 0, 0) if none."""
    rows, cols = mask.abs().amax(0).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return (8, 8, 0, 0)
    top, left = int(rows.min()), int(cols.min())
    return (max(8, int(rows.max()) - top + 1), max(8, int(cols.max()) - left + 1), top, left)


def _group_by_area(entries: list[_Entry], x: Any) -> list[list[tuple[_Entry, tuple[int, int, int, int]]]]:
    groups: dict[tuple[int, int, int, int], list[tuple[_Entry, tuple[int, int, int, int]]]] = {}
    for entry in entries:
        area = _area(entry, x)
        groups.setdefault(area, []).append((entry, area))
    return list(groups.values())


def _area_weight(area: tuple[int, int, int, int], x: Any) -> Any:
    """1 inside the area, fading in linearly along edges that are not the image border, over
    min(FEATHER, side // 4) pixels of each side (ComfyUI's rule)."""
    import torch

    h, w, y, x0 = area
    mult = torch.ones((1, 1, h, w), dtype=x.dtype, device=x.device)
    for dim, size, offset, full in ((2, h, y, x.shape[2]), (3, w, x0, x.shape[3])):
        steps = min(FEATHER, size // 4)
        for t in range(steps):
            value = (t + 1) / steps
            if offset != 0:
                mult.narrow(dim, t, 1).mul_(value)
            if offset + size < full:
                mult.narrow(dim, size - 1 - t, 1).mul_(value)
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
    extra = _concat_channels(model, entries, x, area)
    if extra is not None:
        x_in = torch.cat([x_in, extra], dim=1)
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


# SD1.x's latent of a mid-grey image, what ComfyUI feeds an inpainting model without a masked image.
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


def _concat_channels(model: ModelHandle, entries: list[_Entry], x: Any, area: tuple[int, ...]) -> Any:
    """Extra UNet input channels after the noisy latent, stacked by entry, cropped to the area: for a
    9-channel inpainting model the mask and the masked image's latent (`concat_mask`,
    `concat_latent_image`), for an 8-channel InstructPix2Pix model the image's latent; None if the
    model takes no extra channels."""
    import torch

    extra = int(getattr(model.unet.config, "in_channels", x.shape[1])) - x.shape[1]
    if extra <= 0:
        return None
    if extra not in (4, 5):
        raise ValueError(
            f"the model takes {extra} input channels beside the latent; Loom knows 9-channel inpainting "
            "and 8-channel InstructPix2Pix models"
        )
    h, w, y, x0 = area
    parts = []
    for entry in entries:
        image = entry.options.get("concat_latent_image")
        if extra == 5:
            mask = entry.options.get("concat_mask")
            mask = (
                torch.ones_like(x[:, :1])
                if mask is None
                else _fit(mask.reshape(-1, 1, *mask.shape[-2:]), x).round()
            )
            if image is None:
                image = (
                    torch.tensor(BLANK_INPAINT_LATENT, dtype=x.dtype, device=x.device)
                    .view(1, 4, 1, 1)
                    .expand_as(x)
                )
            else:
                image = _fit(model.latent.process_in(image.to(x.device, x.dtype)), x)
            channels = torch.cat([mask, image], dim=1)
        else:
            channels = torch.zeros_like(x) if image is None else _fit(image, x)
        parts.append(channels[:, :, y : y + h, x0 : x0 + w])
    return torch.cat(parts)


def _fit(tensor: Any, x: Any) -> Any:
    """Resize [B, C, h, w] to x's latent size (bilinear, centre crop) and repeat it to x's batch."""
    import torch.nn.functional as F

    tensor = tensor.to(x.device, x.dtype)
    if tensor.shape[-2:] != x.shape[-2:]:
        height, width = tensor.shape[-2], tensor.shape[-1]
        old_aspect, new_aspect = width / height, x.shape[3] / x.shape[2]
        trim_x = round((width - width * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 0
        trim_y = round((height - height * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 0
        tensor = tensor[:, :, trim_y : height - trim_y, trim_x : width - trim_x]
        tensor = F.interpolate(tensor, size=x.shape[2:], mode="bilinear")
    if tensor.shape[0] < x.shape[0]:
        tensor = tensor.repeat(-(-x.shape[0] // tensor.shape[0]), 1, 1, 1)[: x.shape[0]]
    return tensor[: x.shape[0]]
