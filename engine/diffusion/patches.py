"""Weight patches (LoRA): applied to a module's weights for the duration of a call, then undone.

The base modules are shared by every handle made from one checkpoint, so a patch never stays in
place: `applied()` adds the deltas, yields, and restores the saved weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightPatch:
    """weight += strength * scale * (up @ down), reshaped to the weight (a LoRA pair)."""

    target: int  # index of the module in the handle's module list (0: UNet / first text encoder)
    parameter: str  # e.g. "down_blocks.0.attentions.0.proj_in.weight"
    up: Any
    down: Any
    scale: float
    strength: float

    def delta(self, weight: Any) -> Any:
        """The change to `weight`, in fp32 when `weight` is a half type (fp16 text encoders on the CPU)."""
        import torch

        dtype = weight.dtype if weight.dtype.itemsize >= 4 else torch.float32
        up = self.up.to(weight.device, dtype)
        down = self.down.to(up.device, up.dtype)
        product = up.flatten(1) @ down.flatten(1)
        return (product * (self.scale * self.strength)).reshape(weight.shape)


@contextmanager
def applied(modules: tuple[Any, ...], patches: tuple[WeightPatch, ...]) -> Iterator[None]:
    import torch

    saved: list[tuple[Any, Any]] = []
    try:
        with torch.no_grad():
            for patch in patches:
                if patch.strength == 0:
                    continue
                weight = modules[patch.target].get_parameter(patch.parameter)
                saved.append((weight, weight.detach().clone()))
                delta = patch.delta(weight)
                if delta.dtype == weight.dtype:
                    weight += delta
                else:  # a half weight: add in fp32, round once (as ComfyUI patches fp16 weights)
                    weight.copy_((weight.to(delta.dtype) + delta).to(weight.dtype))
        yield
    finally:
        with torch.no_grad():
            for weight, original in reversed(saved):
                weight.copy_(original)
