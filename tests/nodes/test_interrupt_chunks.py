"""Long tensor work (batched VAE decode, big resizes) stops within a chunk of an interrupt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from engine.context import Context, Interrupted, current_context
from engine.diffusion.latent_formats import SD15
from engine.diffusion.vae import VAE
from nodes.image import basic
from nodes.latent import vae as vae_nodes


class SlowVae(torch.nn.Module):
    """Decodes each latent to an 8× larger image of its mean, taking 50 ms per call."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.config = SimpleNamespace(block_out_channels=[1, 1, 1, 1], latent_channels=4)  # f=8, as SD

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        time.sleep(0.05)
        pixels = latents[:, :3].repeat_interleave(8, 2).repeat_interleave(8, 3) * self.scale
        return SimpleNamespace(sample=pixels)


def interrupted_after(delay: float, work: Callable[[], Any]) -> float:
    """Run `work` as a node would, interrupt it after `delay`; seconds from interrupt to stop."""
    flag = threading.Event()
    ctx = Context(node_id="7", prompt_id="p", emit=lambda event, data: None, interrupt_flag=flag)
    token = current_context.set(ctx)
    timer = threading.Timer(delay, flag.set)
    timer.start()
    try:
        with pytest.raises(Interrupted):
            work()
        return time.monotonic() - asked(timer, delay)
    finally:
        timer.cancel()
        current_context.reset(token)


def asked(timer: threading.Timer, delay: float) -> float:
    return _started[timer] + delay


_started: dict[threading.Timer, float] = {}
_original_start = threading.Timer.start


def _start(self: threading.Timer) -> None:
    _started[self] = time.monotonic()
    _original_start(self)


threading.Timer.start = _start  # type: ignore[method-assign]


def test_batched_vae_decode_stops_between_chunks() -> None:
    handle = VAE.wrap(SlowVae(), SD15())
    latents = torch.rand(400, 4, 8, 8)  # 100 calls of 50 ms: 5 s uninterrupted
    assert interrupted_after(0.3, lambda: vae_nodes.decode(handle, latents)) < 0.5


def test_chunked_decode_equals_one_call() -> None:
    handle = VAE.wrap(SlowVae(), SD15())
    latents = torch.rand(6, 4, 4, 4)
    decoded = vae_nodes.decode(handle, latents)
    whole = ((handle.vae.decode(latents).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
    assert torch.equal(decoded, whole.detach())


def test_a_big_lanczos_resize_stops_between_bands() -> None:
    image = torch.rand(1, 3072, 3072, 3)
    assert interrupted_after(0.3, lambda: basic.resize(image, 8192, 8192, "lanczos")) < 1.5


def test_a_big_bicubic_resize_stops_between_channels() -> None:
    image = torch.rand(2, 2048, 2048, 3)
    assert interrupted_after(0.2, lambda: basic.resize(image, 6144, 6144, "bicubic")) < 2.5


def test_banded_lanczos_equals_one_pillow_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from PIL import Image

    monkeypatch.setattr(basic, "CHUNK_VALUES", 1234 * 3 * 7)
    pixels = (np.random.default_rng(1).random((300, 500, 3)) * 255).astype(np.uint8)
    whole = np.asarray(Image.fromarray(pixels).resize((1234, 777), Image.Resampling.LANCZOS))
    assert np.array_equal(basic._lanczos_bands(Image.fromarray(pixels), 1234, 777, 3), whole)
