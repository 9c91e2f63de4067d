"""Qwen-Image 2.1's reading of Qwen3-VL's hidden states (ComfyUI's QwenImage21TEModel): the system turn
is dropped (everything before the second `<|im_start|>`), and when reference latents come with the prompt
the vision tokens are dropped too, each image's position in what is left recorded as its `image_slots`
entry: the diffusion model splices the image's latent in there instead."""

from __future__ import annotations

from typing import Any

IM_START_ID = 151644


def vision_tokens(image: Any, patch: int = 16, merge: int = 2) -> int:
    """How many language-model tokens Qwen3-VL's vision tower makes of an IMAGE (its first image)."""
    from engine.models.qwen_vision import resized_size

    height, width = resized_size(int(image.shape[1]), int(image.shape[2]), patch * merge)
    return (height // (patch * merge)) * (width // (patch * merge))


def kept(window: list[tuple[Any, ...]], keep_vision: bool) -> tuple[list[bool], list[int]]:
    """(which positions of the encoded window stay, the slot of each image) for one token window."""
    keep: list[bool] = []
    starts: list[int] = []
    spans: list[tuple[int, int]] = []
    for pair in window:
        token = pair[0]
        if isinstance(token, dict) and token.get("type") == "image":
            count = vision_tokens(token["data"])
            spans.append((len(keep), count))
            keep.extend([True] * count)
            continue
        if isinstance(token, int) and token == IM_START_ID:
            starts.append(len(keep))
        keep.append(True)
    cut = starts[1] if len(starts) > 1 else 0
    keep[:cut] = [False] * cut
    slots = []
    if not keep_vision:
        for start, count in spans:
            keep[start : start + count] = [False] * count
            slots.append(sum(keep[:start]))
    return keep, slots


def trim(cond: Any, window: list[tuple[Any, ...]], keep_vision: bool) -> Any:
    import torch

    keep, _ = kept(window, keep_vision)
    if len(keep) != cond.shape[1]:
        return cond
    return cond[:, torch.tensor(keep, dtype=torch.bool, device=cond.device)]
