"""Block offloading: run a transformer larger than the free device memory by keeping part of its blocks
in CPU memory and moving each onto the device only while it runs.

The blocks are the modules diffusers marks as unsplittable (`_no_split_modules`: Flux's double and single
blocks, SD3's joint blocks, Z-Image's layers, Qwen-Image's blocks). Everything else (embedders, norms, the
output layer) and as many blocks as fit go to the device once; the rest stay on the CPU and are moved in
by a forward pre-hook and back out by a forward hook, so at most one streamed block is on the device at a
time. The device holds at most `budget` bytes of weights (tracked in `peak_bytes`). Used by the device
manager when a model does not fit (engine.diffusion.devices); on a CPU there is nothing to move, but the
same bookkeeping runs, which is how it is tested.
"""

from __future__ import annotations

from typing import Any

import torch

_ATTRIBUTE = "_loom_block_offload"


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def blocks_of(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's unsplittable blocks, outermost only, in module order."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    found: list[torch.nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if type(module).__name__ in names:
            found.append(module)
            inside.update(id(m) for m in module.modules())
    return found


def can_offload(model: Any) -> bool:
    return isinstance(model, torch.nn.Module) and len(blocks_of(model)) > 1


class BlockOffload:
    """The placement of one model: which blocks stay on the device and which are streamed."""

    def __init__(
        self, model: torch.nn.Module, device: torch.device, budget: int, storage: Any = "cpu"
    ) -> None:
        self.model, self.device, self.budget, self.storage = model, device, budget, torch.device(storage)
        blocks = blocks_of(model)
        in_blocks = {id(p) for b in blocks for p in (*b.parameters(), *b.buffers())}
        base = sum(
            t.numel() * t.element_size()
            for t in (*model.parameters(), *model.buffers())
            if id(t) not in in_blocks
        )
        largest = max(_bytes(b) for b in blocks)
        if base + largest > budget:
            raise MemoryError(
                f"{type(model).__name__}: {base + largest} bytes are needed on the device even with every "
                f"block offloaded (non-block weights and the largest block), but only {budget} are free"
            )
        self.resident_bytes = base
        self.resident: list[torch.nn.Module] = []
        self.streamed: list[torch.nn.Module] = []
        for block in blocks:  # the first ones that fit stay, leaving room for one streamed block
            size = _bytes(block)
            fits = self.resident_bytes + size + largest <= budget
            (self.resident if fits else self.streamed).append(block)
            self.resident_bytes += size if fits else 0
        self.peak_bytes = self.resident_bytes
        self.moved_in = 0
        self._on_device = self.resident_bytes
        self._hooks: list[Any] = []
        self._place(blocks)

    def _place(self, blocks: list[torch.nn.Module]) -> None:
        streamed = {id(b) for b in self.streamed}
        for block in blocks:
            block.to(self.storage if id(block) in streamed else self.device)
        block_ids = {id(m) for b in blocks for m in b.modules()}
        for module in self.model.modules():  # the non-block parts
            if id(module) not in block_ids:
                for parameter in module.parameters(recurse=False):
                    parameter.data = parameter.data.to(self.device)
                for name, buffer in list(module.named_buffers(recurse=False)):
                    module._buffers[name] = buffer.to(self.device)
        for block in self.streamed:
            self._hooks.append(block.register_forward_pre_hook(self._move_in))
            self._hooks.append(block.register_forward_hook(self._move_out))

    def _move_in(self, block: torch.nn.Module, args: Any) -> None:
        block.to(self.device)
        self.moved_in += 1
        self._on_device += _bytes(block)
        self.peak_bytes = max(self.peak_bytes, self._on_device)

    def _move_out(self, block: torch.nn.Module, args: Any, output: Any) -> None:
        block.to(self.storage)
        self._on_device -= _bytes(block)

    def remove(self) -> None:
        """Take the hooks off and move the whole model to the storage device."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self.model.to(self.storage)


def place(model: torch.nn.Module, device: torch.device, budget: int) -> BlockOffload:
    """Put `model` on `device` within `budget` bytes of weights, streaming the blocks that do not fit."""
    current = getattr(model, _ATTRIBUTE, None)
    if current is not None:
        return current
    offload = BlockOffload(model, device, budget)
    setattr(model, _ATTRIBUTE, offload)
    return offload


def placed(model: Any) -> BlockOffload | None:
    return getattr(model, _ATTRIBUTE, None)


def remove(model: Any) -> None:
    offload = getattr(model, _ATTRIBUTE, None)
    if offload is not None:
        offload.remove()
        delattr(model, _ATTRIBUTE)
