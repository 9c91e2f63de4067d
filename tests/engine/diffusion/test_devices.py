"""Device choices checked on the CPU: half precision on CUDA, VRAM-aware offload, opt-in torch.compile."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.diffusion import devices
from engine.diffusion.devices import ACTIVATION_RESERVE, ModelManager
from tests.engine.diffusion.conftest import sample, tiny_model


def _pretend_cuda(monkeypatch: pytest.MonkeyPatch, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


@pytest.mark.parametrize(("bf16", "vae"), [(True, torch.bfloat16), (False, torch.float16)])
def test_half_precision_by_default_on_cuda(monkeypatch: pytest.MonkeyPatch, bf16: bool, vae: Any) -> None:
    _pretend_cuda(monkeypatch, bf16)
    manager = ModelManager()
    assert manager.device.type == "cuda"
    assert manager.dtype("unet") == torch.float16 and manager.dtype("text") == torch.float16
    assert manager.dtype("vae") == vae
    assert ModelManager(force_cpu=True).dtype("unet") == torch.float32


class _Module:
    """Stands for a model: its size in bytes, and where `.to` last sent it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.where = "cpu"

    def parameters(self) -> list[torch.Tensor]:
        return [torch.empty(self.size, dtype=torch.uint8, device="meta")]

    def to(self, device: Any) -> _Module:
        self.where = str(device)
        return self


def test_offload_moves_least_recently_used_models_off_when_vram_runs_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pretend_cuda(monkeypatch, True)
    total = 10 << 30
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    manager = ModelManager()
    unet, vae, text = _Module(4 << 30), _Module(2 << 30), _Module(3 << 30)

    def free_memory() -> tuple[int, int]:
        used = sum(m.size for m in (unet, vae, text) if m.where == "cuda")
        return total - used, total

    monkeypatch.setattr(torch.cuda, "mem_get_info", free_memory)
    manager.use(text)
    manager.use(unet)
    manager.use(vae)  # 3 GiB free < 2 GiB + the 2 GiB reserve: the oldest (text) goes back
    assert (text.where, unet.where, vae.where) == ("cpu", "cuda", "cuda")
    assert free_memory()[0] >= ACTIVATION_RESERVE
    manager.use(unet)  # already there: nothing moves
    assert (unet.where, vae.where) == ("cuda", "cuda")
    manager.offload_all()
    assert (text.where, unet.where, vae.where) == ("cpu", "cpu", "cpu")


def test_compile_is_opt_in_and_made_once_per_unet(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []

    def fake_compile(module: Any) -> Any:  # stands for torch.compile: records, then runs the module
        compiled.append(module)
        return lambda *args, **kwargs: module(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = tiny_model("sd1")
    plain = sample(model, steps=2)
    assert compiled == []  # off by default
    monkeypatch.setattr(devices.manager(), "compile_unet", True)
    unet = model.model.diffusion_model
    try:
        with_compile = sample(model, steps=2)
        assert compiled == [unet]  # once, reused for every step
        assert torch.equal(plain, with_compile)
        assert "_loom_compiled" not in dict(unet.named_modules())  # not a submodule: same state dict
    finally:
        unet.__dict__.pop("_loom_compiled", None)  # the UNet is shared with other tests
