"""ComfyUI's comfy.model_management as packs use it: devices, interrupt, cache and memory queries."""

from __future__ import annotations

from typing import Any

import psutil
import torch

from engine.context import Interrupted, current_context

# One exception for both names: a pack that raises or catches ComfyUI's sees Loom's interrupt.
InterruptProcessingException = Interrupted


def get_torch_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def text_encoder_device() -> torch.device:
    return get_torch_device()


def processing_interrupted() -> bool:
    ctx = current_context.get()
    return ctx is not None and ctx.interrupt_flag.is_set()


def interrupt_current_processing(value: bool = True) -> None:
    ctx = current_context.get()
    if ctx is not None:
        if value:
            ctx.interrupt_flag.set()
        else:
            ctx.interrupt_flag.clear()


def throw_exception_if_processing_interrupted() -> None:
    ctx = current_context.get()
    if ctx is not None:
        ctx.check_interrupt()


def soft_empty_cache(force: bool = False) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def get_free_memory(dev: Any = None, torch_free_too: bool = False) -> int | tuple[int, int]:
    device = torch.device(dev) if dev is not None else get_torch_device()
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    return (free, free) if torch_free_too else free


def get_total_memory(dev: Any = None) -> int:
    device = torch.device(dev) if dev is not None else get_torch_device()
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[1])
    return int(psutil.virtual_memory().total)


def is_device_mps(device: Any) -> bool:
    return torch.device(device).type == "mps"


def is_device_cpu(device: Any) -> bool:
    return torch.device(device).type == "cpu"
