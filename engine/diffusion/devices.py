"""Device placement: models stay on the CPU until a node needs them, then move to the best device.

One process-wide manager, like the rest of the engine's configuration. On CUDA, models are cast to
half precision when they are loaded (bf16 for the VAE where supported, fp16 elsewhere) and the least
recently used ones go back to the CPU when GPU memory runs short (`use` makes room for the weights it
moves plus `ACTIVATION_RESERVE`). On the CPU the UNet and VAE are fp32 and a checkpoint's fp16 text
encoder stays fp16, computed in fp32 (engine.models.cast). `--compile` runs UNets through torch.compile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

ModelRole = Literal["unet", "vae", "text"]
# Keep this much GPU memory free for activations on top of the weights being loaded.
ACTIVATION_RESERVE = 2 << 30
_COMPILED = "_loom_compiled"


class ModelManager:
    def __init__(self, force_cpu: bool = False, compile_unet: bool = False) -> None:
        self.force_cpu = force_cpu
        # `--compile`: UNets run through torch.compile (opt-in: the first step compiles for minutes, and
        # on the CPU it needs a C++ compiler).
        self.compile_unet = compile_unet
        self._on_device: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def runnable(self, module: Any) -> Any:
        """What to call to run `module`: itself, or with `--compile` its torch.compile wrapper (made once
        per module and reused, so a prompt recompiles only when shapes change)."""
        if not self.compile_unet:
            return module
        import torch

        with self._lock:
            compiled = module.__dict__.get(_COMPILED)
            if compiled is None:
                # Kept in the module's __dict__, not as a submodule (its state dict stays the same); the
                # cycle module → wrapper → module goes with the module.
                compiled = module.__dict__[_COMPILED] = torch.compile(module)
        return compiled

    @property
    def device(self) -> torch.device:
        import torch

        if not self.force_cpu and torch.cuda.is_available():
            return torch.device("cuda")
        if not self.force_cpu and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    def dtype(self, role: ModelRole) -> torch.dtype:
        import torch

        device = self.device
        if device.type == "cuda":
            return torch.bfloat16 if role == "vae" and torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16 if role != "vae" else torch.float32
        return torch.float32

    def use(self, *modules: Any) -> torch.device:
        """Put modules on the compute device (evicting others if memory is short); returns the device."""
        from engine.diffusion import block_offload

        device = self.device
        with self._lock:
            for module in modules:
                if block_offload.placed(module) is None:
                    # A model already there needs no room (counting it again evicted others for nothing).
                    if device.type == "cuda" and id(module) not in self._on_device:
                        self._make_room(_bytes_of(module), keep=modules)
                    if device.type == "cuda" and self._too_large(module):
                        # More weights than free memory: stream the blocks that do not fit.
                        free, _ = torch_cuda_mem_get_info()
                        block_offload.place(module, device, free - ACTIVATION_RESERVE)
                    else:
                        module.to(device)
                self._on_device[id(module)] = module
                self._on_device.move_to_end(id(module))
        return device

    def _too_large(self, module: Any) -> bool:
        from engine.diffusion import block_offload

        free, _ = torch_cuda_mem_get_info()
        return _bytes_of(module) + ACTIVATION_RESERVE > free and block_offload.can_offload(module)

    def release(self, *modules: Any) -> None:
        """Move modules back to the CPU once their work is done (the flow families' large text encoders)."""
        with self._lock:
            for module in modules:
                if self._on_device.pop(id(module), None) is not None and self.device.type != "cpu":
                    _to_cpu(module)

    def offload_all(self) -> None:
        """Move every model back to the CPU and release cached GPU memory (POST /free)."""
        import torch

        with self._lock:
            for module in self._on_device.values():
                _to_cpu(module)
            self._on_device.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _make_room(self, needed: int, keep: tuple[Any, ...]) -> None:
        import torch

        kept = {id(m) for m in keep}
        for key in list(self._on_device):
            free, _ = torch.cuda.mem_get_info()
            if free >= needed + ACTIVATION_RESERVE:
                return
            if key not in kept:
                _to_cpu(self._on_device.pop(key))
                torch.cuda.empty_cache()


def _to_cpu(module: Any) -> None:
    from engine.diffusion import block_offload

    block_offload.remove(module)
    module.to("cpu")


def torch_cuda_mem_get_info() -> tuple[int, int]:
    import torch

    return torch.cuda.mem_get_info()


def _bytes_of(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


_manager = ModelManager()


def manager() -> ModelManager:
    return _manager


def configure(force_cpu: bool) -> None:
    _manager.force_cpu = force_cpu


def unload_models() -> None:
    """POST /free's unload_models: every model off the GPU, and no checkpoint kept for reuse."""
    from engine.diffusion.handles import forget_loaded

    _manager.offload_all()
    forget_loaded()
