"""ComfyUI's comfy.conds: the wrappers of extra model inputs (`model_conds`) in conditioning entries.

Each wrapper says how its tensor is brought to a batch (`process_cond`), whether two entries can run in
one model call (`can_concat`) and how they are joined (`concat`), as ComfyUI's do. Loom's guidance
reads them from a conditioning entry's `model_conds` dict (engine.diffusion.guidance): `c_concat` is
stacked after the latent's channels, other keys are passed to the model's `apply_model`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from engine.diffusion.batching import repeat_to_batch

__all__ = ["CONDConstant", "CONDCrossAttn", "CONDList", "CONDNoiseShape", "CONDRegular"]


def _same_device(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device != b.device:
        logging.warning("WARNING: conds not on same device, skipping concat.")
        return False
    return True


class CONDRegular:
    """A tensor with a batch dimension: repeated to the batch, joined along it when shapes agree."""

    def __init__(self, cond: Any) -> None:
        self.cond = cond

    def _copy_with(self, cond: Any) -> CONDRegular:
        return self.__class__(cond)

    def process_cond(self, batch_size: int, **kwargs: Any) -> CONDRegular:
        return self._copy_with(repeat_to_batch(self.cond, batch_size))

    def can_concat(self, other: CONDRegular) -> bool:
        return self.cond.shape == other.cond.shape and _same_device(self.cond, other.cond)

    def concat(self, others: list[CONDRegular]) -> Any:
        return torch.cat([self.cond, *(other.cond for other in others)])

    def size(self) -> list[int]:
        return list(self.cond.size())


class CONDNoiseShape(CONDRegular):
    """Shaped like the latent: cut to the area being sampled before it is batched. `area` lists the
    sizes of the spatial dimensions, then their offsets."""

    def process_cond(self, batch_size: int, area: Any = None, **kwargs: Any) -> CONDRegular:
        data = self.cond
        if area is not None:
            dims = len(area) // 2
            for i in range(dims):
                data = data.narrow(i + 2, area[i + dims], area[i])
        return self._copy_with(repeat_to_batch(data, batch_size))


class CONDCrossAttn(CONDRegular):
    """Text context [B, tokens, width]: contexts of different lengths join by repeating each to their
    least common multiple of tokens (repeating a context leaves attention's result unchanged), up to
    four times the shorter one."""

    def can_concat(self, other: CONDRegular) -> bool:
        mine, theirs = self.cond.shape, other.cond.shape
        if mine != theirs:
            if mine[0] != theirs[0] or mine[2] != theirs[2]:
                return False
            if math.lcm(mine[1], theirs[1]) // min(mine[1], theirs[1]) > 4:
                return False
        return _same_device(self.cond, other.cond)

    def concat(self, others: list[CONDRegular]) -> Any:
        conds = [self.cond, *(other.cond for other in others)]
        length = math.lcm(*(c.shape[1] for c in conds))
        return torch.cat([c.repeat(1, length // c.shape[1], 1) for c in conds])


class CONDConstant(CONDRegular):
    """A value passed as is (not batched); entries join only when their values are equal."""

    def process_cond(self, batch_size: int, **kwargs: Any) -> CONDRegular:
        return self._copy_with(self.cond)

    def can_concat(self, other: CONDRegular) -> bool:
        return bool(self.cond == other.cond)

    def concat(self, others: list[CONDRegular]) -> Any:
        return self.cond

    def size(self) -> list[int]:
        return [1]


class CONDList(CONDRegular):
    """A list of tensors, each batched and joined on its own."""

    def process_cond(self, batch_size: int, **kwargs: Any) -> CONDRegular:
        return self._copy_with([repeat_to_batch(c, batch_size) for c in self.cond])

    def can_concat(self, other: CONDRegular) -> bool:
        return len(self.cond) == len(other.cond) and all(
            a.shape == b.shape for a, b in zip(self.cond, other.cond, strict=True)
        )

    def concat(self, others: list[CONDRegular]) -> Any:
        return [torch.cat([c, *(other.cond[i] for other in others)]) for i, c in enumerate(self.cond)]

    def size(self) -> list[int]:
        """A [1, width, elements / width] stand-in for memory estimates (the last tensor's width)."""
        total, width = 0, 1
        for c in self.cond:
            total += math.prod(c.size())
            if c.ndim > 1:
                width = c.shape[1]
        return [1, width, total // width]
