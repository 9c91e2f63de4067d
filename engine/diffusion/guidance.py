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
negative side is skipped unless a patch set `disable_cfg1_optimization`. Before sampling, the guider
applies ComfyUI's process_conds rules (`engine.diffusion.process_conds`); what each entry feeds the model
beside latent and text is batched by `engine.diffusion.model_inputs`.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from engine.diffusion.model_inputs import added_conditions, class_input, concat_channels, model_conds

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
    adm = class_input([entry for entry, _ in group], batch)
    if adm is not None:
        c["y"] = adm
    concat = concat_channels(model, [entry for entry, _ in group], x, area)
    if concat is not None:
        c["c_concat"] = concat
    for key, value in model_conds(group[0][0], batch, area, x.device).items():
        c.setdefault(key, value)  # what the model itself derives wins, as in ComfyUI's encode_model_conds
    added = added_conditions(model, [entry for entry, _ in group], crop, batch)
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
