"""Qwen-Image: detection from the key layout ComfyUI's split file uses, config from shapes, loading.

ComfyUI's `qwen_image_*.safetensors` names the MMDiT's modules as diffusers' `QwenImageTransformer2DModel`
does (`img_in`, `txt_norm`, `txt_in`, `time_text_embed.timestep_embedder`, `transformer_blocks.N.{img_mod.1,
txt_mod.1, attn.{to_q, …, add_q_proj, …, norm_q, norm_added_q, …}, img_mlp.net.{0.proj,2}, txt_mlp…}`,
`norm_out.linear`, `proj_out`), so its weights load as they are; a checkpoint prefixes them with
`model.diffusion_model.`. `txt_norm` (an RMSNorm over the Qwen2.5-VL hidden states) identifies it.
Qwen-Image Layered (`qwen_image_layered*.safetensors`) adds `time_text_embed.addition_t_embedding` (an
embedding of two rows added to the timestep's: 0 for the RGBA layers it generates, diffusers'
`use_additional_t_cond`) and generates an image and its layers as frames of one 5-D latent.

Rotary positions are ComfyUI's (`CentredRope`): diffusers' `QwenEmbedRope` agrees with them on even
token grids only. For a grid of odd height h (1328 px gives 83 rows) ComfyUI centres rows at -(h//2)
… h//2 where diffusers uses -(h//2 + 1) … h//2 - 1, and ComfyUI starts the text after the generated
image's half-size alone where diffusers takes the largest of all images (a larger reference image).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.models.flux import marked_prefix

Shapes = Mapping[str, tuple[int, ...]]

MARKERS = ("txt_norm.weight", "img_in.weight", "transformer_blocks.0.img_mod.1.weight")
LAYERED_MARKER = "time_text_embed.addition_t_embedding.weight"
HEAD_DIM = 128
PATCH = 2


def prefix_of(shapes: Shapes) -> str | None:
    return marked_prefix(shapes, MARKERS)


def is_layered(shapes: Shapes, prefix: str) -> bool:
    """Qwen-Image Layered: its timestep embedding takes the extra (layer / image) condition."""
    return prefix + LAYERED_MARKER in shapes


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    hidden, in_channels = shapes[p + "img_in.weight"]
    pattern = re.compile(re.escape(p) + r"transformer_blocks\.(\d+)\.")
    layered = {"use_additional_t_cond": True, "use_layer3d_rope": True} if is_layered(shapes, p) else {}
    return {
        **layered,
        "patch_size": PATCH,
        "in_channels": in_channels,
        "out_channels": shapes[p + "proj_out.weight"][0] // (PATCH * PATCH),
        "num_layers": len({int(m.group(1)) for k in shapes if (m := pattern.match(k))}),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": shapes[p + "txt_in.weight"][1],
        "guidance_embeds": False,
        "axes_dims_rope": (16, 56, 56),
    }


def converter(config: Mapping[str, Any]) -> Any:
    """The file already uses diffusers' names."""
    return lambda state: dict(state)


class CentredRope:
    """Qwen-Image's rotary frequencies as ComfyUI's `QwenImageTransformer2DModel` places its tokens,
    in the (image, text) complex form diffusers' transformer blocks take: image n of `video_fhw` (0: the
    generated one, then the reference latents) at frame index n with rows and columns centred as
    `arange(size) - size // 2`; text from the generated image's larger half-size on, on all axes.

    The generated latent's frames (Qwen-Image Layered's image and layers) take frame indices 0, 1, …;
    with `reference_step` -1 (ComfyUI's "negative_index", Layered's default) reference n sits at frame
    -n instead of n, where diffusers' layered pipeline puts its conditioning image (frame -1)."""

    def __init__(self, theta: int, axes_dim: list[int]) -> None:
        self.theta = theta
        self.axes_dim = list(axes_dim)
        self.reference_step = 1

    def _freqs(self, positions: Any) -> Any:
        """[n, 3] positions → [n, sum(axes_dim) / 2] unit complex rotations (diffusers' arithmetic)."""
        import torch

        parts = []
        for axis, dim in enumerate(self.axes_dim):
            inverse = 1.0 / torch.pow(self.theta, torch.arange(0, dim, 2).to(torch.float32).div(dim))
            angles = torch.outer(positions[:, axis].float(), inverse.to(positions.device))
            parts.append(torch.polar(torch.ones_like(angles), angles))
        return torch.cat(parts, dim=1)

    def __call__(self, video_fhw: Any, device: Any = None, max_txt_seq_len: Any = None) -> tuple[Any, Any]:
        import torch

        shapes = video_fhw[0] if isinstance(video_fhw, list) else video_fhw
        shapes = shapes if isinstance(shapes, list) else [shapes]
        images = []
        for index, (frames, height, width) in enumerate(shapes):
            rows = torch.arange(height, device=device) - height // 2
            cols = torch.arange(width, device=device) - width // 2
            grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
            if index == 0:
                frame = torch.arange(frames, device=device).repeat_interleave(grid.shape[0])[:, None]
            else:
                frame = torch.full((grid.shape[0] * frames, 1), index * self.reference_step, device=device)
            images.append(torch.cat([frame, grid.repeat(frames, 1)], dim=1))
        _, height, width = shapes[0]
        start = max(height // 2, width // 2)
        text = torch.arange(start, start + int(max_txt_seq_len), device=device)[:, None].expand(-1, 3)
        return self._freqs(torch.cat(images)), self._freqs(text)


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `QwenImageTransformer2DModel` filled from the weights under `prefix` (other keys ignored)."""
    from diffusers import QwenImageTransformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of
    from engine.models.zimage import OTHER_MODELS

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, OTHER_MODELS)
    model = filled(
        lambda: QwenImageTransformer2DModel(**config),
        lambda _: dict(own),  # the file's own names: each tensor read once, here
        "Qwen-Image diffusion model",
        dtype,
    )
    # diffusers' QwenEmbedRope holds no weights; ComfyUI's placement replaces it as a plain attribute.
    del model._modules["pos_embed"]
    object.__setattr__(model, "pos_embed", CentredRope(10000, list(config["axes_dims_rope"])))
    return model
