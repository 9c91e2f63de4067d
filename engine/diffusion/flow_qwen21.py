"""Qwen-Image 2.1 as a flow MODEL: one sequence of text, reference images and the generated image.

The network (diffusers' `QwenImage21Transformer2DModel`, whose modules Loom calls one by one) reads a
single stream: the projected Qwen3-VL text with each reference latent spliced in at its `image_slots`
position (where the prompt's vision tokens were, TextEncodeQwenImage21), then the generated latent, one
64-channel latent pixel per token. Attention is block-causal: text is causal, each image block sees itself
and everything before it. Text and references are modulated as at timestep 0, the generated image at the
sampled one. Rotary positions follow ComfyUI: text advances one position on all three axes; an image
holds its frame position and centres its rows and columns on zero (half a token off where a reference's
parity differs from the generated image's) and advances the position by its longer side.
"""

from __future__ import annotations

import itertools
from typing import Any

from engine.diffusion.batching import reference_shapes, stacked_references
from engine.diffusion.flow_models import _UnpooledFlow


class QwenImage21(_UnpooledFlow):
    """Qwen-Image 2.1; the timestep is sigma (the network scales it by 1000)."""

    def context_width(self) -> int:
        return int(self.diffusion_model.config.context_in_dim)

    def condition_key(self, entry: dict[str, Any]) -> tuple[Any, ...]:
        """Entries batch together only with the same reference shapes and slots."""
        return (*reference_shapes(entry), tuple(entry.get("image_slots") or ()))

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        stacked = stacked_references(entries, batch, self.process_latent_in, crop.device)
        return {"ref_latents": stacked, "image_slots": list(entries[0].get("image_slots") or [])}

    def _forward(self, x: Any, timestep: Any, context: Any, extra: dict[str, Any]) -> Any:
        import torch

        net = self.diffusion_model
        batch, _, height, width = x.shape
        refs = [r.to(x.dtype) for r in extra.get("ref_latents", [])]
        hidden, positions, segments = _sequence(
            net, x, net.txt_in(context), refs, extra.get("image_slots", [])
        )
        prefix = hidden.shape[1] - height * width
        target = torch.zeros(hidden.shape[1], dtype=torch.bool, device=x.device)
        target[prefix:] = True
        # t rounded through the compute dtype as ComfyUI does (t·1000, then back), and one extra row at
        # t = 0, which text and references read (diffusers' causal_condition).
        t = ((timestep * 1000).to(x.dtype) / 1000).to(x.dtype)
        temb = net.time_text_embed(torch.cat([t, t.new_zeros(1)]), hidden)
        modulation = net.modulation(temb)
        rotary = _rope(net).freqs(positions)
        for block in net.transformer_blocks:
            hidden = block(
                hidden_states=hidden,
                modulation=modulation,
                rotary_emb=rotary,
                target_token_mask=target,
                segments=segments,
            )
        out = net.proj_out(net.norm_out(hidden, temb, target)[:, prefix:])
        return out.transpose(1, 2).reshape(batch, -1, height, width)


def _centred(size: int, target: int, device: Any) -> Any:
    """Row (or column) positions of an image side centred on zero; half a token off where its parity
    differs from the generated image's, so references centre on it."""
    import torch

    return (
        torch.arange(size, device=device, dtype=torch.float32)
        - (size - size // 2)
        + 0.5 * (size % 2 - target % 2)
    )


def _sequence(net: Any, x: Any, text: Any, refs: list[Any], slots: list[int]) -> tuple[Any, Any, list[Any]]:
    """(tokens [B, N, D], positions [N, 3], prefix segments (start, end, is_text)) of the joint stream."""
    import torch

    cut = (list(slots) + [text.shape[1]] * len(refs))[: len(refs)]
    bounds = [0, *cut, text.shape[1]]
    parts, ids, segments = [], [], []
    position, length = 0, 0
    for (start, end), image in zip(itertools.pairwise(bounds), [*refs, x], strict=True):
        if end > start:
            count = end - start
            parts.append(text[:, start:end])
            ids.append(
                torch.arange(position, position + count, device=x.device).float()[:, None].expand(count, 3)
            )
            segments.append((length, length + count, True))
            position, length = position + count, length + count
        rows, cols = image.shape[-2:]
        parts.append(net.img_in(image.flatten(2).transpose(1, 2)))
        grid_rows = _centred(rows, x.shape[-2], x.device)[:, None].expand(rows, cols)
        grid_cols = _centred(cols, x.shape[-1], x.device)[None, :].expand(rows, cols)
        frame = torch.full((rows, cols), float(position), device=x.device)
        ids.append(torch.stack([frame, grid_rows, grid_cols], dim=-1).reshape(-1, 3))
        segments.append((length, length + rows * cols, False))
        position, length = position + max(rows, cols), length + rows * cols
    return torch.cat(parts, dim=1), torch.cat(ids), segments[:-1]


class _Rope:
    """Unit complex rotations [N, head_dim / 2] for (frame, row, column) positions, per axis as
    diffusers' `QwenImage21Rope.rope_params` computes them (positions may be half-integers)."""

    def __init__(self, theta: int, axes_dim: list[int]) -> None:
        self.theta, self.axes_dim = theta, axes_dim

    def freqs(self, positions: Any) -> Any:
        import torch

        parts = []
        for axis, dim in enumerate(self.axes_dim):
            inverse = 1.0 / torch.pow(self.theta, torch.arange(0, dim, 2, dtype=torch.float32) / dim)
            angles = torch.outer(positions[:, axis].float(), inverse.to(positions.device))
            parts.append(torch.polar(torch.ones_like(angles), angles))
        return torch.cat(parts, dim=1)


def _rope(net: Any) -> _Rope:
    return _Rope(10000, list(net.config.axes_dims_rope))
