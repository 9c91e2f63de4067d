"""Block offloading, checked on the CPU with a simulated memory budget: the blocks that do not fit are
streamed one at a time, the weights on the "device" never exceed the budget, and the output is the same."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.diffusion import block_offload


def _flux() -> Any:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(
        in_channels=16,
        num_layers=2,
        num_single_layers=3,
        attention_head_dim=32,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 12, 12),
    ).eval()


def _run(model: Any) -> torch.Tensor:
    torch.manual_seed(1)
    ids = torch.zeros(16, 3)
    ids[:, 1], ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    with torch.no_grad():
        return model(
            hidden_states=torch.randn(1, 16, 16),
            encoder_hidden_states=torch.randn(1, 5, 32),
            pooled_projections=torch.randn(1, 16),
            timestep=torch.tensor([0.5]),
            img_ids=ids,
            txt_ids=torch.zeros(5, 3),
            return_dict=False,
        )[0]


def test_streams_what_does_not_fit_and_gives_the_same_output() -> None:
    model = _flux()
    expected = _run(model)
    blocks = block_offload.blocks_of(model)
    assert len(blocks) == 5  # 2 double + 3 single blocks
    sizes = [block_offload._bytes(b) for b in blocks]
    base = block_offload._bytes(model) - sum(sizes)
    budget = base + sizes[0] + max(sizes)  # room for one resident block and one streamed at a time
    offload = block_offload.place(model, torch.device("cpu"), budget)
    assert offload.resident == blocks[:1] and offload.streamed == blocks[1:]
    assert torch.equal(_run(model), expected)
    assert offload.moved_in == 4 and offload.peak_bytes <= budget
    assert block_offload.place(model, torch.device("cpu"), budget) is offload  # placing twice is a no-op
    block_offload.remove(model)
    _run(model)
    assert offload.moved_in == 4 and block_offload.placed(model) is None  # hooks are gone


def test_everything_fits_means_nothing_streams() -> None:
    model = _flux()
    offload = block_offload.place(model, torch.device("cpu"), 10 * block_offload._bytes(model))
    assert offload.streamed == [] and offload.moved_in == 0
    block_offload.remove(model)


def test_a_budget_below_one_block_is_a_clear_error() -> None:
    model = _flux()
    with pytest.raises(MemoryError, match="only 1000 are free"):
        block_offload.place(model, torch.device("cpu"), 1000)
    assert block_offload.placed(model) is None


def test_device_manager_offloads_what_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA (simulated: placement recorded, nothing moved) a model larger than the free memory is
    placed by blocks; one that fits is moved whole; releasing it removes the placement."""
    from engine.diffusion import devices

    manager = devices.ModelManager()
    monkeypatch.setattr(devices.ModelManager, "device", property(lambda self: torch.device("cuda")))
    monkeypatch.setattr(manager, "_make_room", lambda needed, keep: None)
    big, small = _flux(), torch.nn.Linear(2, 2)
    free = devices.ACTIVATION_RESERVE + block_offload._bytes(big) // 2
    monkeypatch.setattr(devices, "torch_cuda_mem_get_info", lambda: (free, 10 * free))
    placed: list[tuple[Any, int]] = []
    monkeypatch.setattr(block_offload, "place", lambda model, device, budget: placed.append((model, budget)))
    moved: list[Any] = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(self) or self)
    manager.use(big, small)
    assert placed == [(big, free - devices.ACTIVATION_RESERVE)] and moved == [small]
