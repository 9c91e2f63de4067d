"""ComfyUI's comfy.utils as packs use it: ProgressBar, state dicts, attribute paths, batch resizing,
image resizing and tiled processing (Loom's engine.diffusion.tiling)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from engine.context import Context, current_context
from engine.diffusion.tiling import tiled_scale, tiled_scale_multidim
from engine.diffusion.tiling import tiled_scale_steps as get_tiled_scale_steps
from nodes.image.basic import bislerp

__all__ = ["bislerp", "get_tiled_scale_steps", "tiled_scale", "tiled_scale_multidim"]

PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK: Callable[..., Any] | None = None


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function: Callable[..., Any] | None) -> None:
    """Loom reports progress through the running node's context; a pack's hook is kept but not called."""
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


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


def load_torch_file(
    path: str, safe_load: bool = True, device: Any = None, return_metadata: bool = False
) -> Any:
    """A state dict from .safetensors (or, with weights only, a pickle-free .pt/.ckpt/.bin); with
    `return_metadata`, (state dict, safetensors metadata or None)."""
    device = device or torch.device("cpu")
    metadata: dict[str, str] | None = None
    if str(path).lower().endswith((".safetensors", ".sft")):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
            metadata = handle.metadata()
    else:
        loaded = torch.load(path, map_location=device, weights_only=True)
        state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded
    return (state, metadata) if return_metadata else state


def save_torch_file(sd: dict[str, torch.Tensor], ckpt: str, metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as .safetensors (tensors made contiguous, as safetensors requires)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, ckpt, metadata=metadata)


def calculate_parameters(sd: dict[str, torch.Tensor], prefix: str = "") -> int:
    return sum(v.nelement() for k, v in sd.items() if k.startswith(prefix))


def weight_dtype(sd: dict[str, torch.Tensor], prefix: str = "") -> torch.dtype | None:
    """The dtype holding most of the parameters under `prefix`."""
    counts: dict[torch.dtype, int] = {}
    for key, value in sd.items():
        if key.startswith(prefix):
            counts[value.dtype] = counts.get(value.dtype, 0) + value.numel()
    return max(counts, key=lambda dtype: counts[dtype]) if counts else None


def state_dict_key_replace(state_dict: dict[str, Any], keys_to_replace: dict[str, str]) -> dict[str, Any]:
    for old, new in keys_to_replace.items():
        if old in state_dict:
            state_dict[new] = state_dict.pop(old)
    return state_dict


def state_dict_prefix_replace(
    state_dict: dict[str, Any], replace_prefix: dict[str, str], filter_keys: bool = False
) -> dict[str, Any]:
    """Rename keys starting with each old prefix to start with its new one. In place, unless
    `filter_keys`: then a new dict of only the renamed keys (they are still removed from the input)."""
    out: dict[str, Any] = {} if filter_keys else state_dict
    for old, new in replace_prefix.items():
        for key in [k for k in state_dict if k.startswith(old)]:
            out[new + key[len(old) :]] = state_dict.pop(key)
    return out


def convert_sd_to(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    for key in list(state_dict):
        state_dict[key] = state_dict[key].to(dtype)
    return state_dict


def safetensors_header(path: str, max_size: int = 100 * 1024 * 1024) -> bytes | None:
    import struct

    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return None if length > max_size else handle.read(length)


def get_attr(obj: Any, attr: str) -> Any:
    """`obj.a.b.c` for attr "a.b.c"."""
    for name in attr.split("."):
        obj = getattr(obj, name)
    return obj


def set_attr(obj: Any, attr: str, value: Any) -> Any:
    """Set `obj.a.b.c = value`; returns the previous value."""
    *path, last = attr.split(".")
    owner = get_attr(obj, ".".join(path)) if path else obj
    previous = getattr(owner, last)
    setattr(owner, last, value)
    return previous


def set_attr_param(obj: Any, attr: str, value: torch.Tensor) -> Any:
    return set_attr(obj, attr, torch.nn.Parameter(value, requires_grad=False))


def copy_to_param(obj: Any, attr: str, value: torch.Tensor) -> None:
    """Copy into an existing parameter in place (modules sharing it see the change)."""
    get_attr(obj, attr).data.copy_(value)


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    """Cut or repeat (tiling whole batches) along `dim` to `batch_size`."""
    from engine.diffusion.batching import repeat_to_batch

    return repeat_to_batch(tensor, batch_size, dim)


def _batch_indices(size: int, batch_size: int) -> list[int]:
    if batch_size < size:
        step = (size - 1) / (batch_size - 1)
        return [min(round(i * step), size - 1) for i in range(batch_size)]
    step = size / batch_size
    return [min(int((i + 0.5) * step), size - 1) for i in range(batch_size)]


def resize_to_batch_size(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Pick evenly spread items to shrink a batch, or repeat items evenly to grow it."""
    if tensor.shape[0] == batch_size:
        return tensor
    if batch_size <= 1:
        return tensor[:batch_size]
    return tensor[_batch_indices(tensor.shape[0], batch_size)]


def resize_list_to_batch_size(items: list[Any], batch_size: int) -> list[Any]:
    if len(items) in (batch_size, 0):
        return items
    if batch_size <= 1:
        return items[:batch_size]
    return [items[i] for i in _batch_indices(len(items), batch_size)]


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize a [B, C, H, W] image batch with PIL's Lanczos filter (values clipped to 0..1)."""
    from nodes.image.basic import _resize_lanczos

    return _resize_lanczos(samples, width, height).to(samples.dtype)


def reshape_mask(input_mask: torch.Tensor, output_shape: tuple[int, ...]) -> torch.Tensor:
    """A mask resized (bilinear) to the spatial size of `output_shape` and repeated over its channels."""
    dims = len(output_shape) - 2
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]
    mask = input_mask
    if dims == 2:
        mask = mask.reshape((-1, 1, *mask.shape[-2:]))
    elif dims == 3 and mask.ndim < 5:
        mask = mask.reshape((1, 1, -1, *mask.shape[-2:]))
    mask = torch.nn.functional.interpolate(mask, size=tuple(output_shape[2:]), mode=mode)
    if mask.shape[1] < output_shape[1]:
        mask = mask.repeat((1, output_shape[1]) + (1,) * dims)[:, : output_shape[1]]
    return repeat_to_batch_size(mask, output_shape[0])


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
    if upscale_method == "bislerp":
        return bislerp(samples, width, height)
    if upscale_method == "lanczos":
        return lanczos(samples, width, height)
    mode = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "area": "area"}.get(
        upscale_method, "bicubic"
    )
    options: dict[str, Any] = {} if mode in ("nearest-exact", "area") else {"align_corners": False}
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=mode, **options)
