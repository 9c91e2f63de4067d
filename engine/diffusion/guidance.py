"""Classifier-free guidance over CONDITIONING lists, with ComfyUI's hooks and area conditioning.

CONDITIONING is ComfyUI's list of `[cond_tensor, options]` pairs; options may hold `pooled_output`,
`area` (height, width, y, x in latent pixels), `strength`, `start_percent`/`end_percent`,
`prompt_type` and SDXL's size hints. `convert_cond` turns a list into the dicts the sampler works
on. `calc_cond_batch` predicts every entry of several cond lists in one UNet batch per area shape
(contexts of different lengths are repeated to a common length, which leaves cross-attention
unchanged) and blends each list's entries by their feathered area masks; `sampling_function` then
applies, as ComfyUI does, the pre-cfg functions, the cfg function (default
`uncond + (cond - uncond) * cfg`) and the post-cfg functions of `model_options`. At cfg 1 the
negative side is skipped unless a patch set `disable_cfg1_optimization`.
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
    model: Any, conds: list[list[dict[str, Any]] | None], x_in: Any, timestep: Any, model_options: dict[str, Any]
) -> list[Any]:
    """The denoised prediction of each cond list (None lists give zeros), as ComfyUI's calc_cond_batch."""
    import torch

    sums = [torch.zeros_like(x_in) for _ in conds]
    counts = [torch.ones_like(x_in) * 1e-37 for _ in conds]
    runs = []
    for index, cond in enumerate(conds):
        for entry in cond or []:
            if _active_at(entry, model, timestep):
                runs.append((entry, index, _area(entry, x_in)))
    groups: dict[tuple[int, int, int, int], list[tuple[dict[str, Any], int]]] = {}
    for entry, index, area in runs:
        groups.setdefault(area, []).append((entry, index))
    for area, group in groups.items():
        outputs = _run_group(model, group, x_in, timestep, area, model_options)
        h, w, y, x0 = area
        for (entry, index), output in zip(group, outputs, strict=True):
            mult = _area_weight(area, x_in) * entry.get("strength", 1.0)
            sums[index][:, :, y : y + h, x0 : x0 + w] += output * mult
            counts[index][:, :, y : y + h, x0 : x0 + w] += mult
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
            "cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": timestep,
            "input": x, "sigma": timestep, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred,
            "model": model, "model_options": model_options, "input_cond": cond, "input_uncond": uncond,
        }  # fmt: skip
        result = x - model_options["sampler_cfg_function"](args)
    else:
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {
            "denoised": result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale, "model": model,
            "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
            "model_options": model_options, "input": x,
        }  # fmt: skip
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
            "conds": conds, "conds_out": out, "cond_scale": cond_scale, "timestep": timestep, "input": x,
            "sigma": timestep, "model": model, "model_options": model_options,
        }  # fmt: skip
        out = fn(args)
    return cfg_function(model, out[0], out[1], cond_scale, x, timestep, model_options, cond=cond, uncond=conds[1])


def _active_at(entry: dict[str, Any], model: Any, timestep: Any) -> bool:
    """ConditioningSetTimestepRange: an entry applies only between its start and end percent."""
    if "start_percent" not in entry and "end_percent" not in entry:
        return True
    sampling = model.model_sampling
    sigma = float(timestep.reshape(-1)[0])
    start = float(sampling.percent_to_sigma(entry.get("start_percent", 0.0)))
    end = float(sampling.percent_to_sigma(entry.get("end_percent", 1.0)))
    return end <= sigma <= start


def _area(entry: dict[str, Any], x: Any) -> tuple[int, int, int, int]:
    height, width = x.shape[2], x.shape[3]
    if "area" not in entry:
        return (height, width, 0, 0)
    h, w, y, x0 = (int(v) for v in entry["area"])
    y, x0 = min(y, height - 1), min(x0, width - 1)
    return (max(1, min(h, height - y)), max(1, min(w, width - x0)), y, x0)


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

    h, w, y, x0 = area
    batch = x.shape[0]
    crop = x[:, :, y : y + h, x0 : x0 + w]
    x_all = crop.repeat(len(group), 1, 1, 1)
    contexts = _common_length([entry["cross_attn"].to(x.device) for entry, _ in group])
    context = torch.cat([c.expand(batch, -1, -1) if c.shape[0] == 1 else c for c in contexts])
    sigmas = sigma.reshape(-1).expand(x_all.shape[0]) if sigma.numel() == 1 else sigma.repeat(len(group))
    cond_or_uncond = [index for _, index in group]
    options = dict(model_options.get("transformer_options", {}))
    options.update(cond_or_uncond=cond_or_uncond[:], uuids=[e["uuid"] for e, _ in group], sigmas=sigma)
    c: dict[str, Any] = {"c_crossattn": context, "transformer_options": options}
    added = _added_conditions(model, [entry for entry, _ in group], crop, batch)
    if added is not None:
        c["added_cond_kwargs"] = added
    wrapper = model_options.get("model_function_wrapper")
    if wrapper is not None:
        args = {"input": x_all, "timestep": sigmas, "c": c, "cond_or_uncond": cond_or_uncond}
        output = wrapper(model.apply_model, args)
    else:
        output = model.apply_model(x_all, sigmas, **c)
    return list(output.chunk(len(group)))


def _added_conditions(model: Any, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any] | None:
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
