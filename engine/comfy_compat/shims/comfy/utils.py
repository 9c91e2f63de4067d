"""ComfyUI's comfy.utils as packs use it: ProgressBar, tensor loading and image resizing."""

from __future__ import annotations

from typing import Any

import torch

from engine.context import Context, current_context

PROGRESS_BAR_ENABLED = True


class ProgressBar:
    """Progress of the running node: `update(n)` adds n steps, `update_absolute(v)` sets the value.

    Created inside a node function, it reports through that node's context (progress events, and an
    interrupt stops the node at the next update); created anywhere else it does nothing."""

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = total
        self.current = 0
        self.node_id = node_id
        self._ctx: Context | None = current_context.get()

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self._ctx is not None:
            self._ctx.progress(self.current, self.total)
            if preview is not None:
                _send_preview(self._ctx, preview)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


def _send_preview(ctx: Context, preview: Any) -> None:
    """ComfyUI's preview tuple is (format, PIL image, max size)."""
    import io

    image_format, image = preview[0], preview[1]
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    ctx.preview(image_format, buffer.getvalue())


def load_torch_file(path: str, safe_load: bool = True, device: Any = None) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors (or, with weights only, a pickle-free .pt/.ckpt/.bin)."""
    device = device or torch.device("cpu")
    if str(path).lower().endswith((".safetensors", ".sft")):
        from safetensors.torch import load_file

        return load_file(str(path), device=str(device))
    loaded = torch.load(path, map_location=device, weights_only=True)
    return loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded


def common_upscale(
    samples: torch.Tensor, width: int, height: int, upscale_method: str, crop: str
) -> torch.Tensor:
    """Resize a [B, C, H, W] tensor; crop "center" first cuts it to the target aspect ratio."""
    if crop == "center":
        old_width, old_height = samples.shape[-1], samples.shape[-2]
        old_aspect, new_aspect = old_width / old_height, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
        samples = samples.narrow(-2, y, old_height - y * 2).narrow(-1, x, old_width - x * 2)
    mode = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "area": "area"}.get(
        upscale_method, "bicubic"
    )
    options: dict[str, Any] = {} if mode in ("nearest-exact", "area") else {"align_corners": False}
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=mode, **options)
