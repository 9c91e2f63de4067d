"""ComfyUI's comfy.model_management as packs use it: devices, dtypes, loading models onto the device,
interrupt, cache and memory queries — answered by Loom's model manager (engine.diffusion.devices).

Loom keeps models on the CPU and moves them to the compute device when a node uses them, least
recently used first out when memory runs short; `load_models_gpu` asks it to do so for a pack's
models. Devices and dtypes are the manager's (`--cpu` included): fp16 weights on CUDA, bf16 for the
VAE where supported, fp32 on the CPU. Attention runs through PyTorch's SDPA (diffusers), never xformers.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import psutil
import torch

from engine.context import Interrupted, current_context
from engine.diffusion.devices import ACTIVATION_RESERVE, manager

# One exception for both names: a pack that raises or catches ComfyUI's sees Loom's interrupt.
InterruptProcessingException = Interrupted
OOM_EXCEPTION = torch.cuda.OutOfMemoryError
DISABLE_SMART_MEMORY = False
XFORMERS_IS_AVAILABLE = False
XFORMERS_ENABLED_VAE = False


class VRAMState(Enum):
    DISABLED = 0  # no GPU: everything on the CPU
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5  # CPU and GPU share memory (Apple silicon)


class CPUState(Enum):
    GPU = 0
    CPU = 1
    MPS = 2


def _states() -> tuple[VRAMState, CPUState]:
    kind = manager().device.type
    if kind == "cpu":
        return VRAMState.DISABLED, CPUState.CPU
    if kind == "mps":
        return VRAMState.SHARED, CPUState.MPS
    return VRAMState.NORMAL_VRAM, CPUState.GPU


def __getattr__(name: str) -> Any:
    """Module attributes that follow Loom's configuration (`--cpu` is applied after packs import)."""
    if name in ("vram_state", "set_vram_to"):
        return _states()[0]
    if name == "cpu_state":
        return _states()[1]
    if name == "total_vram":
        return get_total_memory() / (1024 * 1024)
    if name == "total_ram":
        return psutil.virtual_memory().total / (1024 * 1024)
    raise AttributeError(f"module 'comfy.model_management' has no attribute {name!r} in Loom")


def get_torch_device() -> torch.device:
    device = manager().device
    if device.type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def intermediate_dtype() -> torch.dtype:
    """The dtype of images and masks between nodes (newer ComfyUI's name): float32, as Loom's nodes."""
    return torch.float32


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def text_encoder_device() -> torch.device:
    return get_torch_device()


def text_encoder_offload_device() -> torch.device:
    return torch.device("cpu")


def text_encoder_initial_device(load_device: Any, offload_device: Any, model_size: int = 0) -> torch.device:
    return torch.device("cpu")  # Loom loads every model on the CPU first


def unet_inital_load_device(parameters: int, dtype: Any) -> torch.device:
    return torch.device("cpu")


def vae_device() -> torch.device:
    return get_torch_device()


def vae_offload_device() -> torch.device:
    return torch.device("cpu")


def _on_compute_device(device: Any) -> bool:
    return device is None or torch.device(device).type == manager().device.type


def unet_dtype(
    device: Any = None, model_params: int = 0, supported_dtypes: Any = None, weight_dtype: Any = None
) -> torch.dtype:
    dtype = manager().dtype("unet") if _on_compute_device(device) else torch.float32
    return dtype if supported_dtypes is None or dtype in supported_dtypes else torch.float32


def unet_manual_cast(weight_dtype: Any, inference_device: Any, supported_dtypes: Any = None) -> None:
    return None  # Loom's weights are already in the dtype they compute in


def text_encoder_dtype(device: Any = None) -> torch.dtype:
    return manager().dtype("text") if _on_compute_device(device) else torch.float32


def vae_dtype(device: Any = None, allowed_dtypes: Any = None) -> torch.dtype:
    return manager().dtype("vae") if _on_compute_device(device) else torch.float32


def should_use_fp16(
    device: Any = None, model_params: int = 0, prioritize_performance: bool = True, manual_cast: bool = False
) -> bool:
    return _on_compute_device(device) and manager().dtype("unet") == torch.float16


def should_use_bf16(
    device: Any = None, model_params: int = 0, prioritize_performance: bool = True, manual_cast: bool = False
) -> bool:
    return _on_compute_device(device) and manager().dtype("unet") == torch.bfloat16


def supports_dtype(device: Any, dtype: torch.dtype) -> bool:
    return dtype == torch.float32 or torch.device(device).type != "cpu" or dtype == torch.bfloat16


def supports_cast(device: Any, dtype: torch.dtype) -> bool:
    return True


def dtype_size(dtype: torch.dtype) -> int:
    return dtype.itemsize


def get_autocast_device(dev: Any) -> str:
    return dev.type if hasattr(dev, "type") else "cuda"


def cast_to(
    weight: torch.Tensor,
    dtype: Any = None,
    device: Any = None,
    non_blocking: bool = False,
    copy: bool = False,
    stream: Any = None,
) -> torch.Tensor:
    return weight.to(device=device, dtype=dtype, non_blocking=non_blocking, copy=copy)


def cast_to_device(tensor: torch.Tensor, device: Any, dtype: Any, copy: bool = False) -> torch.Tensor:
    return tensor.to(device=device, dtype=dtype, copy=copy)


def device_supports_non_blocking(device: Any) -> bool:
    return torch.device(device).type == "cuda"


def device_should_use_non_blocking(device: Any) -> bool:
    return False


def module_size(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _module_of(model: Any) -> torch.nn.Module:
    """The torch module behind a ModelPatcher-like object (`.model`), or the module itself."""
    inner = getattr(model, "model", model)
    if not isinstance(inner, torch.nn.Module):
        raise TypeError(f"load_models_gpu: {type(model).__name__} holds no torch module")
    return inner


def load_models_gpu(
    models: list[Any],
    memory_required: int = 0,
    force_patch_weights: bool = False,
    minimum_memory_required: int | None = None,
    force_full_load: bool = False,
) -> None:
    """Put the models' modules on the compute device, evicting least recently used ones if needed."""
    manager().use(*(_module_of(m) for m in models))


def load_model_gpu(model: Any) -> None:
    load_models_gpu([model])


def unload_all_models() -> None:
    manager().offload_all()


def free_memory(memory_required: int, device: Any, keep_loaded: Any = ()) -> list[Any]:
    """Make `memory_required` bytes free on `device`: when less is free, Loom's model manager moves
    every model off the devices (it does not pick models one by one as ComfyUI does)."""
    if get_free_memory(device) >= memory_required:  # type: ignore[operator]
        return []
    manager().offload_all()
    return []


def cleanup_models() -> None:
    return None  # the output cache owns what stays loaded


def cleanup_models_gc() -> None:
    import gc

    gc.collect()


def minimum_inference_memory() -> int:
    return ACTIVATION_RESERVE


def extra_reserved_memory() -> int:
    return 0


def cpu_mode() -> bool:
    return manager().device.type == "cpu"


def mps_mode() -> bool:
    return manager().device.type == "mps"


def is_device_type(device: Any, kind: str) -> bool:
    return hasattr(device, "type") and device.type == kind


def is_device_cuda(device: Any) -> bool:
    return is_device_type(device, "cuda")


def is_device_xpu(device: Any) -> bool:
    return is_device_type(device, "xpu")


def is_nvidia() -> bool:
    return manager().device.type == "cuda" and torch.version.cuda is not None


def is_amd() -> bool:
    return manager().device.type == "cuda" and torch.version.hip is not None


def is_intel_xpu() -> bool:
    return False


def is_directml_enabled() -> bool:
    return False


def xformers_enabled() -> bool:
    return False


def xformers_enabled_vae() -> bool:
    return False


def pytorch_attention_enabled() -> bool:
    return True  # diffusers' attention runs through torch's scaled_dot_product_attention


def pytorch_attention_enabled_vae() -> bool:
    return True


def pytorch_attention_flash_attention() -> bool:
    return manager().device.type == "cuda"


def sage_attention_enabled() -> bool:
    return False


def flash_attention_enabled() -> bool:
    return False


def force_upcast_attention_dtype() -> None:
    return None


def supports_fp8_compute(device: Any = None) -> bool:
    return False


def get_torch_device_name(device: Any) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} {torch.cuda.get_device_name(device)}"
    return str(device.type)


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
    return is_device_type(device, "mps")


def is_device_cpu(device: Any) -> bool:
    return is_device_type(device, "cpu")
