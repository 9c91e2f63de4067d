"""Classifier-free guidance over CONDITIONING lists, with ComfyUI's hooks and area conditioning.

CONDITIONING is ComfyUI's list of `[cond_tensor, options]` pairs; options may hold `pooled_output`,
`area` (height, width, y, x in latent pixels, or `("percentage", h, w, y, x)`), `strength`, `mask`
with `mask_strength` and `set_area_to_bounds`, `start_percent`/`end_percent`, `prompt_type`,
`concat_latent_image`/`concat_mask` (the extra input channels of inpainting and InstructPix2Pix
models) and SDXL's size hints. `convert_cond` turns a list into the dicts the sampler works
on. `calc_cond_batch` predicts every entry of several cond lists in one UNet batch per area shape
(contexts of different lengths are repeated to a common length, which leaves cross-attention
unchanged; the joint-attention transformers batch only contexts of equal length, as ComfyUI does)
and blends each list's entries by their masks or feathered areas; `sampling_function` then
applies, as ComfyUI does, the pre-cfg functions, the cfg function (default
`uncond + (cond - uncond) * cfg`) and the post-cfg functions of `model_options`. At cfg 1 the
negative side is skipped unless a patch set `disable_cfg1_optimization`. Before sampling,
`add_opposite_areas` gives every area an opposite one, as ComfyUI's process_conds does.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

FEATHER = 8  # latent pixels over which an area's inner edges fade in


def convert_cond(conditioning: list[Any], prompt_type: str = "positive") -> list[dict[str, Any]]:
    """ComfyUI's convert_cond: `[[tensor, options], ...]` → `[{"cross_attn": tensor, **options}, ...]`."""
    out = []
    for cond, options in conditioning:
        entry = dict(options)
        entry["cross_attn"] = cond
        entry.setdefault("prompt_type", prompt_type)
        entry["uuid"] = uuid.uuid4()
        out.append(entry)
    return out


def calc_cond_batch(
    model: Any,
    conds: list[list[dict[str, Any]] | None],
    x_in: Any,
    timestep: Any,
    model_options: dict[str, Any],
) -> list[Any]:
    """The denoised prediction of each cond list (None lists give zeros), as ComfyUI's calc_cond_batch,
    through the run's CALC_COND_BATCH wrappers (each gets (executor, model, conds, x_in, timestep,
    model_options))."""
    from engine.diffusion.patcher_extension import WrapperExecutor, WrappersMP, get_all_wrappers

    wrappers = get_all_wrappers(WrappersMP.CALC_COND_BATCH, model_options, is_model_options=True)
    if not wrappers:
        return _calc_cond_batch(model, conds, x_in, timestep, model_options)
    executor = WrapperExecutor.new_executor(_calc_cond_batch, wrappers)
    result: list[Any] = executor.execute(model, conds, x_in, timestep, model_options)
    return result


def _calc_cond_batch(
    model: Any,
    conds: list[list[dict[str, Any]] | None],
    x_in: Any,
    timestep: Any,
    model_options: dict[str, Any],
) -> list[Any]:
    import torch

    sums = [torch.zeros_like(x_in) for _ in conds]
    counts = [torch.ones_like(x_in) * 1e-37 for _ in conds]
    runs = []
    for index, cond in enumerate(conds):
        for entry in cond or []:
            if _active_at(entry, model, timestep):
                runs.append((entry, index, _area(entry, x_in)))
    # Entries batch together only where they share an area and a control object (ComfyUI's can_concat).
    # Joint-attention transformers (SD3, Flux, …) see text and image tokens in one attention, so a
    # repeated context would change their output: as ComfyUI (CONDRegular), they batch equal lengths only.
    # A model may name more that must match (Qwen-Image: the shapes of the reference latents).
    by_length = getattr(model, "batch_equal_context_lengths", False)
    condition_key = getattr(model, "condition_key", None)
    groups: dict[tuple[Any, ...], list[tuple[dict[str, Any], int]]] = {}
    for entry, index, area in runs:
        length = int(entry["cross_attn"].shape[1]) if by_length else 0
        # An entry with its own extra model inputs (`model_conds`, comfy.conds objects) runs alone.
        alone = id(entry) if entry.get("model_conds") else 0
        own = condition_key(entry) if condition_key is not None else ()
        groups.setdefault((area, id(entry.get("control")), length, alone, own), []).append((entry, index))
    for (area, *_), group in groups.items():
        outputs = _run_group(model, group, x_in, timestep, area, model_options)
        h, w, y, x0 = area
        for (entry, index), output in zip(group, outputs, strict=True):
            mult = _weight(entry, area, x_in) * entry.get("strength", 1.0)
            sums[index][..., y : y + h, x0 : x0 + w] += output * mult
            counts[index][..., y : y + h, x0 : x0 + w] += mult
    return [s / c for s, c in zip(sums, counts, strict=True)]


def cfg_function(
    model: Any,
    cond_pred: Any,
    uncond_pred: Any,
    cond_scale: float,
    x: Any,
    timestep: Any,
    model_options: dict[str, Any] | None = None,
    cond: Any = None,
    uncond: Any = None,
) -> Any:
    model_options = model_options or {}
    if "sampler_cfg_function" in model_options:
        args = {
            "cond": x - cond_pred,
            "uncond": x - uncond_pred,
            "cond_scale": cond_scale,
            "timestep": timestep,
            "input": x,
            "sigma": timestep,
            "cond_denoised": cond_pred,
            "uncond_denoised": uncond_pred,
            "model": model,
            "model_options": model_options,
            "input_cond": cond,
            "input_uncond": uncond,
        }
        result = x - model_options["sampler_cfg_function"](args)
    else:
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {
            "denoised": result,
            "cond": cond,
            "uncond": uncond,
            "cond_scale": cond_scale,
            "model": model,
            "uncond_denoised": uncond_pred,
            "cond_denoised": cond_pred,
            "sigma": timestep,
            "model_options": model_options,
            "input": x,
        }
        result = fn(args)
    return result


def sampling_function(
    model: Any,
    x: Any,
    timestep: Any,
    uncond: Any,
    cond: Any,
    cond_scale: float,
    model_options: dict[str, Any] | None = None,
    seed: int | None = None,
) -> Any:
    """One guided denoised prediction: cond batch, pre-cfg functions, cfg, post-cfg functions."""
    model_options = model_options or {}
    skip_uncond = math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False)
    conds = [cond, None if skip_uncond else uncond]
    if "sampler_calc_cond_batch_function" in model_options:
        args = {"conds": conds, "input": x, "sigma": timestep, "model": model, "model_options": model_options}
        out = model_options["sampler_calc_cond_batch_function"](args)
    else:
        out = calc_cond_batch(model, conds, x, timestep, model_options)
    for fn in model_options.get("sampler_pre_cfg_function", []):
        args = {
            "conds": conds,
            "conds_out": out,
            "cond_scale": cond_scale,
            "timestep": timestep,
            "input": x,
            "sigma": timestep,
            "model": model,
            "model_options": model_options,
        }
        out = fn(args)
    return cfg_function(
        model, out[0], out[1], cond_scale, x, timestep, model_options, cond=cond, uncond=conds[1]
    )


def _active_at(entry: dict[str, Any], model: Any, timestep: Any) -> bool:
    """ConditioningSetTimestepRange: an entry applies only between its start and end percent."""
    if "start_percent" not in entry and "end_percent" not in entry:
        return True
    sampling = model.model_sampling
    sigma = float(timestep.reshape(-1)[0])
    start = float(sampling.percent_to_sigma(entry.get("start_percent", 0.0)))
    end = float(sampling.percent_to_sigma(entry.get("end_percent", 1.0)))
    return end <= sigma <= start


def resolve_conds(entries: list[dict[str, Any]], latent_shape: Any) -> list[dict[str, Any]]:
    """Fix what depends on the latent's size before sampling (ComfyUI's resolve_areas_and_cond_masks):
    percentage areas become latent pixels, masks are resized to the latent, and a mask with
    `set_area_to_bounds` sets the area to its bounding box (at least 8 latent pixels a side)."""
    import torch.nn.functional as F

    height, width = int(latent_shape[-2]), int(latent_shape[-1])
    resolved = []
    for entry in entries:
        entry = dict(entry)
        area = entry.get("area")
        if area is not None and area[0] == "percentage":
            h, w, y, x = (float(v) for v in area[1:5])
            entry["area"] = (
                max(1, round(h * height)),
                max(1, round(w * width)),
                round(y * height),
                round(x * width),
            )
        if "mask" in entry:
            mask = entry["mask"]
            mask = mask.unsqueeze(0) if mask.ndim == 2 else mask
            if tuple(mask.shape[1:]) != (height, width):
                mask = F.interpolate(
                    mask.unsqueeze(1).float(), size=(height, width), mode="bilinear"
                ).squeeze(1)
            entry["mask"] = mask
            if entry.get("set_area_to_bounds", False):
                entry["area"] = _mask_bounds(mask)
        resolved.append(entry)
    return resolved


def _mask_bounds(mask: Any) -> tuple[int, int, int, int]:
    rows, cols = (mask.abs().amax(dim=0) > 0).nonzero(as_tuple=True)
    if len(rows) == 0:
        return (8, 8, 0, 0)
    y, x = int(rows.min()), int(cols.min())
    return (max(8, int(rows.max()) - y + 1), max(8, int(cols.max()) - x + 1), y, x)


def _weight(entry: dict[str, Any], area: tuple[int, int, int, int], x: Any) -> Any:
    """An entry's blending weight over its area: its mask there (times mask_strength), else 1 with
    feathered inner edges."""
    if "mask" not in entry:
        return _area_weight(area, x)
    h, w, y, x0 = area
    mask = entry["mask"].to(x.device, x.dtype)[: x.shape[0], y : y + h, x0 : x0 + w] * entry.get(
        "mask_strength", 1.0
    )
    # A latent with frames (Qwen-Image Layered) takes the mask on every frame.
    mask = mask.reshape(mask.shape[0], 1, *([1] * (x.ndim - 4)), *mask.shape[1:])
    return mask.repeat(x.shape[0] // mask.shape[0], x.shape[1], *([1] * (x.ndim - 2)))


def _area(entry: dict[str, Any], x: Any) -> tuple[int, int, int, int]:
    height, width = x.shape[-2], x.shape[-1]
    if "area" not in entry:
        return (height, width, 0, 0)
    h, w, y, x0 = (int(v) for v in entry["area"])
    y, x0 = min(y, height - 1), min(x0, width - 1)
    return (max(1, min(h, height - y)), max(1, min(w, width - x0)), y, x0)


def _area_weight(area: tuple[int, int, int, int], x: Any) -> Any:
    """1 inside the area, fading in linearly along edges that are not the image border, over
    min(FEATHER, side // 4) pixels of each side (ComfyUI's rule)."""
    import torch

    h, w, y, x0 = area
    mult = torch.ones((1, 1, *([1] * (x.ndim - 4)), h, w), dtype=x.dtype, device=x.device)
    for dim, size, offset, full in ((-2, h, y, x.shape[-2]), (-1, w, x0, x.shape[-1])):
        steps = min(FEATHER, size // 4)
        for t in range(steps):
            value = (t + 1) / steps
            if offset != 0:
                mult.narrow(dim, t, 1).mul_(value)
            if offset + size < full:
                mult.narrow(dim, size - 1 - t, 1).mul_(value)
    return mult


def _common_length(contexts: list[Any]) -> list[Any]:
    target = math.lcm(*(c.shape[1] for c in contexts))
    return [c.repeat(1, target // c.shape[1], 1) for c in contexts]


def _run_group(
    model: Any,
    group: list[tuple[dict[str, Any], int]],
    x: Any,
    sigma: Any,
    area: tuple[int, int, int, int],
    model_options: dict[str, Any],
) -> list[Any]:
    """One UNet call (through the unet wrapper, if any) for the entries sharing an area."""
    import torch

    from engine.diffusion.gligen import with_gligen_patch

    h, w, y, x0 = area
    batch = x.shape[0]
    crop = x[..., y : y + h, x0 : x0 + w]  # 4-D, or 5-D with frames (Qwen-Image Layered)
    x_all = crop.repeat(len(group), *([1] * (crop.ndim - 1)))
    contexts = _common_length([entry["cross_attn"].to(x.device) for entry, _ in group])
    context = torch.cat([c.expand(batch, -1, -1) if c.shape[0] == 1 else c for c in contexts])
    sigmas = sigma.reshape(-1).expand(x_all.shape[0]) if sigma.numel() == 1 else sigma.repeat(len(group))
    cond_or_uncond = [index for _, index in group]
    options = dict(model_options.get("transformer_options", {}))
    options.update(cond_or_uncond=cond_or_uncond[:], uuids=[e["uuid"] for e, _ in group], sigmas=sigma)
    options = with_gligen_patch(options, [entry for entry, _ in group], crop.shape, batch)
    c: dict[str, Any] = {"c_crossattn": context, "transformer_options": options}
    adm = _class_input([entry for entry, _ in group], batch)
    if adm is not None:
        c["y"] = adm
    concat = _concat_channels(model, [entry for entry, _ in group], x, area)
    if concat is not None:
        c["c_concat"] = concat
    for key, value in _model_conds(group[0][0], batch, area, x.device).items():
        c.setdefault(key, value)  # what the model itself derives wins, as in ComfyUI's encode_model_conds
    added = _added_conditions(model, [entry for entry, _ in group], crop, batch)
    if added is not None:
        c["added_cond_kwargs"] = added
    control = group[0][0].get("control")
    if control is None:
        return _apply(model, x_all, sigmas, c, cond_or_uncond, model_options, options, len(group))
    from engine.diffusion.control_conds import fitting

    # A control model made for another UNet fails inside the UNet (residual shapes): name its file.
    with fitting(control, model):
        c["control"] = control.get_control(x_all, sigmas, c, len(group), options)
        return _apply(model, x_all, sigmas, c, cond_or_uncond, model_options, options, len(group))


def _model_conds(
    entry: dict[str, Any], batch: int, area: tuple[int, int, int, int], device: Any
) -> dict[str, Any]:
    """A pack's extra model inputs on an entry (`model_conds`: comfy.conds objects), batched and cut
    to the area as ComfyUI does; `c_concat` then joins the UNet input, other keys reach apply_model."""
    out = {}
    h, w, y, x0 = area
    for key, cond in (entry.get("model_conds") or {}).items():
        out[key] = cond.process_cond(batch_size=batch, area=(h, w, y, x0), device=device).concat([])
    return out


def _apply(
    model: Any,
    x_all: Any,
    sigmas: Any,
    c: dict[str, Any],
    cond_or_uncond: list[int],
    model_options: dict[str, Any],
    transformer_options: dict[str, Any],
    count: int,
) -> list[Any]:
    apply_model = _wrapped_apply_model(model, transformer_options)
    wrapper = model_options.get("model_function_wrapper")
    if wrapper is not None:
        args = {"input": x_all, "timestep": sigmas, "c": c, "cond_or_uncond": cond_or_uncond}
        output = wrapper(apply_model, args)
    else:
        output = apply_model(x_all, sigmas, **c)
    return list(output.chunk(count))


def _wrapped_apply_model(model: Any, transformer_options: dict[str, Any]) -> Any:
    """`model.apply_model` through the APPLY_MODEL wrappers of the call's transformer_options, as
    ComfyUI's BaseModel.apply_model: each wrapper gets (executor, x, t, c_concat, c_crossattn,
    control, transformer_options, **kwargs). Without wrappers, the method itself."""
    from engine.diffusion.patcher_extension import WrapperExecutor, WrappersMP, get_all_wrappers

    wrappers = get_all_wrappers(WrappersMP.APPLY_MODEL, transformer_options)
    if not wrappers:
        return model.apply_model

    def apply_model(
        x: Any, t: Any, c_concat: Any = None, c_crossattn: Any = None, control: Any = None,
        transformer_options: dict[str, Any] | None = None, **kwargs: Any,
    ) -> Any:  # fmt: skip
        executor = WrapperExecutor.new_class_executor(model.apply_model, model, wrappers)
        return executor.execute(x, t, c_concat, c_crossattn, control, transformer_options or {}, **kwargs)

    return apply_model


def _class_input(entries: list[dict[str, Any]], batch: int) -> Any:
    """The class-embedding (ADM) input `y` of models that take one (SD2.1 unCLIP; engine.diffusion.unclip
    sets it on every entry before sampling), repeated to each entry's rows; None for other models."""
    import torch

    if not entries or "y" not in entries[0]:
        return None
    return torch.cat(
        [entry["y"].expand(batch, -1) if entry["y"].shape[0] == 1 else entry["y"] for entry in entries]
    )


def _added_conditions(
    model: Any, entries: list[dict[str, Any]], crop: Any, batch: int
) -> dict[str, Any] | None:
    """SDXL's pooled text embedding and size/crop time ids; None for SD1.x/SD2.x."""
    import torch

    own = getattr(model, "added_conditions", None)
    if own is not None:  # transformer families (engine.diffusion.flow_models) batch their own extras
        return own(entries, crop, batch)
    unet = model.diffusion_model
    if getattr(unet.config, "addition_embed_type", None) != "text_time":
        return None
    dtype = model.get_dtype()
    pooled, time_ids = [], []
    for entry in entries:
        height, width = crop.shape[2] * 8, crop.shape[3] * 8
        sizes = [entry.get("height", height), entry.get("width", width)]
        sizes += [entry.get("crop_h", 0), entry.get("crop_w", 0)]
        if model.family == "sdxl_refiner":
            default_score = 2.5 if entry.get("prompt_type") == "negative" else 6.0
            sizes.append(entry.get("aesthetic_score", default_score))
        else:
            sizes += [entry.get("target_height", height), entry.get("target_width", width)]
        pooled.append(entry["pooled_output"].to(crop.device).expand(batch, -1))
        time_ids.append(torch.tensor([sizes], device=crop.device, dtype=torch.float32).expand(batch, -1))
    return {"text_embeds": torch.cat(pooled).to(dtype), "time_ids": torch.cat(time_ids).to(dtype)}


# What an entry predicts with (ComfyUI's "model conds"), as opposed to where and when it applies.
MODEL_CONDITION_KEYS = frozenset(
    {
        "cross_attn",
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
        "y",
        "reference_latents",
        "reference_latents_method",
    }
)


def share_with_uncond(conds: dict[str, list[dict[str, Any]]]) -> None:
    """ComfyUI's apply_empty_x_to_equal_area, for ControlNets applied with `control_apply_to_uncond`
    (the old ControlNetApply) and for GLIGEN boxes: unless another cond list's full-frame entries
    already carry their own, they take the positive side's, so CFG compares like with like."""
    positive = conds.get("positive", [])
    sources = {
        "control": [e for e in positive if e.get("control_apply_to_uncond")],
        "gligen": positive,
    }
    for name, entries in conds.items():
        if name != "positive":
            for key, source in sources.items():
                _share_full_frame(source, entries, key)


def _share_full_frame(source: list[dict[str, Any]], entries: list[dict[str, Any]], key: str) -> None:
    given = [e[key] for e in source if "area" not in e and e.get(key) is not None]
    frame = [i for i, e in enumerate(entries) if "area" not in e]
    if not given or not frame or any(entries[i].get(key) is not None for i in frame):
        return
    for n, value in enumerate(given):  # more values than entries: later ones win, as in ComfyUI
        index = frame[n % len(frame)]
        entries[index] = {**entries[index], key: value}


def add_opposite_areas(conds: dict[str, list[dict[str, Any]]]) -> None:
    """ComfyUI's rule that every area has an opposite one: for each entry with an area, every other
    cond list gets a copy of it that predicts with that list's smallest entry covering the area (or its
    first entry without an area). Areas must be resolved to latent pixels first (`resolve_conds`)."""
    for name, entries in conds.items():
        for entry in entries:  # grows while it is read: copies placed here are looked at too
            for other_name, others in conds.items():
                if other_name != name:
                    _add_same_area_copy(others, entry)


def _add_same_area_copy(entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    area = entry.get("area")
    if area is None:
        return
    smallest: dict[str, Any] | None = None
    for other in entries:
        other_area = other.get("area")
        if other_area is None:
            if smallest is None:
                smallest = other
        elif _inside(area, other_area) and (
            smallest is None
            or "area" not in smallest
            or math.prod(smallest["area"][:2]) > math.prod(other_area[:2])
        ):
            smallest = other
    if smallest is None or tuple(smallest.get("area", ())) == tuple(area):
        return
    copy = {k: v for k, v in entry.items() if k not in MODEL_CONDITION_KEYS}
    copy.update({k: v for k, v in smallest.items() if k in MODEL_CONDITION_KEYS})
    entries.append(copy)


def _inside(area: Any, outer: Any) -> bool:
    h, w, y, x0 = (int(v) for v in area)
    outer_h, outer_w, outer_y, outer_x = (int(v) for v in outer)
    return y >= outer_y and x0 >= outer_x and y + h <= outer_y + outer_h and x0 + w <= outer_x + outer_w


# SD1.x's latent of a mid-grey image, what ComfyUI feeds an inpainting model without a masked image.
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


def _concat_channels(model: Any, entries: list[dict[str, Any]], x: Any, area: tuple[int, ...]) -> Any:
    """Extra UNet input channels after the noisy latent, stacked by entry, cropped to the area: for a
    9-channel inpainting model the mask and the masked image's latent (`concat_mask`,
    `concat_latent_image`), for an 8-channel InstructPix2Pix model the image's latent; None if the
    model takes no extra channels."""
    import torch

    if getattr(model, "added_conditions", None) is not None:
        return None  # the transformer families (flow_models) take none; Flux packs 2×2 patches as channels
    config = getattr(model.diffusion_model, "config", None)
    extra = int(getattr(config, "in_channels", x.shape[1])) - x.shape[1]
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
        image = entry.get("concat_latent_image")
        if extra == 5:
            mask = entry.get("concat_mask")
            mask = (
                torch.ones_like(x[:, :1])
                if mask is None
                else _fit(mask.reshape(-1, 1, *mask.shape[-2:]), x).round()
            )
            if image is None:
                blank = torch.tensor(BLANK_INPAINT_LATENT, dtype=x.dtype, device=x.device)
                image = blank.view(1, 4, 1, 1).expand_as(x)
            else:
                image = _fit(model.process_latent_in(image.to(x.device, x.dtype)), x)
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
