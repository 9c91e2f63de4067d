"""What each conditioning entry feeds the model beside the noisy latent and its text, batched for one model
call over the entries of an area group (engine.diffusion.guidance): the class (ADM) input `y`, SDXL's
pooled text and size ids or a transformer family's own extras (`added_conditions`), the extra input
channels of inpainting and InstructPix2Pix UNets (`concat_channels`) and packs' `model_conds`.
"""

from __future__ import annotations

from typing import Any


def model_conds(
    entry: dict[str, Any], batch: int, area: tuple[int, int, int, int], device: Any
) -> dict[str, Any]:
    """A pack's extra model inputs on an entry (`model_conds`: comfy.conds objects), batched and cut
    to the area as ComfyUI does; `c_concat` then joins the UNet input, other keys reach apply_model."""
    out = {}
    h, w, y, x0 = area
    for key, cond in (entry.get("model_conds") or {}).items():
        out[key] = cond.process_cond(batch_size=batch, area=(h, w, y, x0), device=device).concat([])
    return out


def class_input(entries: list[dict[str, Any]], batch: int) -> Any:
    """The class-embedding (ADM) input `y` of models that take one (SD2.1 unCLIP; engine.diffusion.unclip
    sets it on every entry before sampling), repeated to each entry's rows; None for other models."""
    import torch

    if not entries or "y" not in entries[0]:
        return None
    return torch.cat(
        [entry["y"].expand(batch, -1) if entry["y"].shape[0] == 1 else entry["y"] for entry in entries]
    )


def added_conditions(
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


# SD1.x's latent of a mid-grey image, what ComfyUI feeds an inpainting model without a masked image.
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


def concat_channels(model: Any, entries: list[dict[str, Any]], x: Any, area: tuple[int, ...]) -> Any:
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
                else fit_to_latent(mask.reshape(-1, 1, *mask.shape[-2:]), x).round()
            )
            if image is None:
                blank = torch.tensor(BLANK_INPAINT_LATENT, dtype=x.dtype, device=x.device)
                image = blank.view(1, 4, 1, 1).expand_as(x)
            else:
                image = fit_to_latent(model.process_latent_in(image.to(x.device, x.dtype)), x)
            channels = torch.cat([mask, image], dim=1)
        else:
            channels = torch.zeros_like(x) if image is None else fit_to_latent(image, x)
        parts.append(channels[:, :, y : y + h, x0 : x0 + w])
    return torch.cat(parts)


def fit_to_latent(tensor: Any, x: Any) -> Any:
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
