"""Attention masks on Flux's joint attention (ComfyUI's `attention_mask` conditioning key).

StyleModelApply with strength_type "attn_bias" (or any conditioning that already carries a mask) records an
additive mask [B, text + image, text + image] over the prompt tokens and an image grid of
`attention_mask_img_shape` (1 × 1 when no image region was given). As ComfyUI's Flux model does, the image
part is resized (bilinear) to the latent's token grid before sampling, and the mask biases every attention
of the transformer, text tokens first. Image tokens the mask does not cover (Kontext's reference latents)
and text tokens a "post_input" patch places before the prompt (USO) are left unbiased. The mask reaches
diffusers' attention processors through each block's `joint_attention_kwargs`, read from a dict at call
time, since a post_input patch may lengthen the text after the transformer's forward has begun.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def resize_image_part(mask: Any, grid_in: tuple[int, int], grid_out: tuple[int, int]) -> Any:
    """The mask with its image rows and columns resized from `grid_in` to `grid_out` tokens (bilinear,
    each axis of the image grid on its own), the text part kept (ComfyUI's `upscale_dit_mask`)."""
    import torch.nn.functional as F

    if tuple(grid_in) == tuple(grid_out):
        return mask
    mask = mask.unsqueeze(0) if mask.ndim == 2 else mask
    if mask.ndim != 3:
        raise ValueError(f"attention_mask has shape {list(mask.shape)}; expected [b, q, k] or [q, k]")
    (hi, wi), (ho, wo) = grid_in, grid_out
    batch, text = mask.shape[0], mask.shape[1] - hi * wi

    def grid(t: Any, rows: int) -> Any:  # [b, rows, h*w] → [b, rows, ho*wo]
        t = F.interpolate(t.reshape(batch, rows, hi, wi), size=(ho, wo), mode="bilinear")
        return t.reshape(batch, rows, ho * wo)

    text_to_image = grid(mask[:, :text, text:], text)
    image_to_text = grid(mask[:, text:, :text].transpose(1, 2), text).transpose(1, 2)
    image_to_image = grid(mask[:, text:, text:], hi * wi)  # keys resized, queries still [hi*wi]
    image_to_image = grid(image_to_image.transpose(1, 2), ho * wo).transpose(1, 2)
    top = mask[:, :text, :text]
    import torch

    return torch.cat(
        [torch.cat([top, text_to_image], dim=2), torch.cat([image_to_text, image_to_image], dim=2)], dim=1
    )


def entry_masks(entries: list[dict[str, Any]], x: Any, batch: int) -> Any:
    """[entries × batch, L, L] masks for the entries' token grid at latent `x` (zeros for an entry without
    one), or None when no entry has a mask."""
    import torch

    if all(entry.get("attention_mask") is None for entry in entries):
        return None
    grid = (math.ceil(x.shape[-2] / 2), math.ceil(x.shape[-1] / 2))
    masks = []
    for entry in entries:
        mask = entry.get("attention_mask")
        if mask is None:
            length = entry["cross_attn"].shape[1] + grid[0] * grid[1]
            mask = torch.zeros((1, length, length))
        else:
            shape = tuple(entry.get("attention_mask_img_shape", (1, 1)))
            mask = resize_image_part(mask.float(), shape, grid)
        mask = mask.to(x.device, torch.float32)
        masks.append(mask.expand(batch, -1, -1) if mask.shape[0] == 1 else mask)
    return torch.cat(masks)


def fit_mask(mask: Any, text_before: int, queries: int) -> Any:
    """The mask [B, L, L] padded with zeros (no bias) to `queries` tokens: `text_before` leading text
    tokens and the trailing image tokens it does not cover; as [B, 1, L, L] for diffusers' attention."""
    import torch.nn.functional as F

    after = queries - text_before - mask.shape[-1]
    if after < 0:
        raise ValueError(
            f"attention_mask covers {mask.shape[-1]} tokens, but the model attends over {queries}: the mask "
            "was made for another prompt or image size"
        )
    mask = F.pad(mask, (text_before, after, text_before, after))
    return mask.unsqueeze(1)


@contextmanager
def call_patches(
    transformer: Any, post_input: list[Any], mask: Any, img_ids: Any, lengths: tuple[int, int]
) -> Iterator[None]:
    """For one call of diffusers' Flux: the "post_input" patches (engine.diffusion.dit_patches) and the
    attention mask (or None), fitted to the text and image token counts `lengths` and to any text tokens
    the patches put before the prompt."""
    from contextlib import ExitStack

    from engine.diffusion.dit_patches import post_input_patches

    text, image = lengths
    attention: dict[str, Any] = {}

    def fit(added_text: int) -> None:
        if mask is not None:
            attention["attention_mask"] = fit_mask(
                mask.to(img_ids.dtype), added_text, text + added_text + image
            )

    fit(0)
    with ExitStack() as stack:
        if post_input:
            stack.enter_context(post_input_patches(transformer, post_input, img_ids, fit))
        if mask is not None:
            stack.enter_context(masked_blocks(transformer, attention))
        yield


@contextmanager
def masked_blocks(transformer: Any, attention: dict[str, Any]) -> Iterator[None]:
    """While inside, every Flux block (double and single) attends with `attention["attention_mask"]`."""
    saved = []
    for block in [*transformer.transformer_blocks, *transformer.single_transformer_blocks]:
        saved.append((block, vars(block).get("forward")))
        block.forward = _with_mask(block.forward, attention)
    try:
        yield
    finally:
        for block, previous in saved:
            if previous is None:
                del block.forward
            else:
                block.forward = previous


def _with_mask(inner: Any, attention: dict[str, Any]) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        extra = dict(kwargs.get("joint_attention_kwargs") or {})
        extra["attention_mask"] = attention["attention_mask"]
        return inner(*args, **{**kwargs, "joint_attention_kwargs": extra})

    return forward
