"""Filling a flow transformer from its file with fp8 storage decided per tensor as it is read.

With an fp8 weight dtype (UNETLoader's, or a file already in fp8) the matrices of Linear layers are kept in
fp8 and everything else in the compute dtype. Converting each tensor as it is read (`TypedReader`) and
assigning it as it is (`fill`) means no Linear weight ever exists in the compute dtype: the peak is the
model at its fp8 size plus one tensor in flight, not the model in fp32/bf16 first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

FP8_NAMES = ("float8_e4m3fn", "float8_e5m2")


def is_fp8(tensor: Any) -> bool:
    return str(tensor.dtype).removeprefix("torch.") in FP8_NAMES


class TypedReader(Mapping[str, Any]):
    """`state`'s tensors converted on lookup: reference-layout Linear matrices (2-D `.weight`) to
    `storage` unless a `keep` pattern names them, other floating tensors to `compute`."""

    def __init__(self, state: Mapping[str, Any], compute: Any, storage: Any, keep: tuple[str, ...]) -> None:
        self.state, self.compute, self.storage, self.keep = state, compute, storage, keep
        header = getattr(state, "header", None)
        self.header = header  # so engine.models.lazy_view reads shapes without touching data

    def target(self, key: str, ndim: int) -> Any:
        matrix = ndim == 2 and key.endswith(".weight") and not any(p in key for p in self.keep)
        return self.storage if matrix else self.compute

    def __getitem__(self, key: str) -> Any:
        tensor = self.state[key]
        if not tensor.is_floating_point():
            return tensor
        return tensor.to(self.target(key, tensor.ndim))

    def __contains__(self, key: object) -> bool:
        return key in (self.header.shapes if self.header is not None else self.state)

    def __iter__(self) -> Iterator[str]:
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)


def fill(build: Callable[[], Any], weights: Callable[[Any], Mapping[str, Any]], what: str, dtype: Any) -> Any:
    """`engine.models.checkpoint._filled`, except that fp8 tensors bound for Linear weights stay fp8 (the
    fp8 layers upcast them per call, engine.diffusion.fp8)."""
    import torch
    from accelerate import init_empty_weights
    from transformers.initialization import no_init_weights

    from engine.models.errors import UnsupportedModelError

    with init_empty_weights(include_buffers=False), no_init_weights():
        model = build()
    state = weights(model)
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(params - set(state.keys()))
    if missing:
        raise UnsupportedModelError(
            f"{what}: {len(missing)} weights missing from the file, e.g. {missing[:3]}"
        )
    linear = {f"{n}.weight" for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    known = model.state_dict().keys()
    out = {}
    for key in [k for k in state if k in known]:
        value = state[key]
        keep_fp8 = key in linear and is_fp8(value)
        target = value.dtype if keep_fp8 or not value.is_floating_point() else dtype
        out[key] = value.to(target).contiguous()
    model.load_state_dict(out, strict=False, assign=True)
    return model.eval().requires_grad_(False)
