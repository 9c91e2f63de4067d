"""ComfyUI's transformer patches on a diffusers UNet2DConditionModel.

ComfyUI's UNet (comfy.ldm) calls patches named in `transformer_options` at fixed points, identified by
block ids: `("input", n)` for the n-th entry of its `input_blocks` (0 is conv_in, then per level one
block per resnet and one for the downsampler), `("middle", 0)`, `("output", n)` for `output_blocks`.
Loom's UNet is diffusers', with other module names; `install()` adds forward hooks and attention
processors that recreate those call points, with the same arguments and the same `extra_options`.

Hooks are installed once per UNet and do nothing unless a call runs inside `active(options)`, so a
UNet used without patches computes exactly what diffusers computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

_MARK = "_loom_comfy_hooks"


@dataclass
class _Call:
    options: dict[str, Any]  # transformer_options of this UNet call (mutated as ComfyUI does)
    skips: list[Any] = field(default_factory=list)  # the UNet's skip connections, as pushed

    @property
    def patches(self) -> dict[str, list[Any]]:
        return self.options.get("patches", {})

    @property
    def replace(self) -> dict[str, dict[Any, Any]]:
        return self.options.get("patches_replace", {})


_current: ContextVar[_Call | None] = ContextVar("loom_transformer_options", default=None)


@contextmanager
def active(options: dict[str, Any], x: Any) -> Iterator[None]:
    """Run UNet calls in this block with `options` as ComfyUI's transformer_options."""
    options["original_shape"] = list(x.shape)
    options["transformer_index"] = 0
    token = _current.set(_Call(options))
    try:
        yield
    finally:
        _current.reset(token)


def optimized_attention(
    q: Any,
    k: Any,
    v: Any,
    heads: int,
    mask: Any = None,
    attn_precision: Any = None,
    skip_reshape: bool = False,
    skip_output_reshape: bool = False,
    **kwargs: Any,
) -> Any:
    """Attention in ComfyUI's layout: q, k, v as (batch, tokens, heads * dim_head), the same layout out
    (with `skip_reshape`, inputs are already (batch, heads, tokens, dim_head); with
    `skip_output_reshape`, so is the output). `attn_precision` is accepted and ignored: the
    computation runs in the inputs' dtype, as torch's scaled_dot_product_attention does."""
    del attn_precision, kwargs
    batch = q.shape[0]
    if not skip_reshape:
        dim_head = q.shape[-1] // heads
        q, k, v = (t.view(batch, -1, heads, dim_head).transpose(1, 2) for t in (q, k, v))
    if mask is not None and mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask is not None and mask.ndim == 3:
        mask = mask.unsqueeze(1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    if skip_output_reshape:
        return out
    return out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[3]).to(q.dtype)


def attention_basic(
    q: Any,
    k: Any,
    v: Any,
    heads: int,
    mask: Any = None,
    attn_precision: Any = None,
    skip_reshape: bool = False,
    skip_output_reshape: bool = False,
    **kwargs: Any,
) -> Any:
    """The same attention written out (softmax(q k^T / sqrt(d)) v), computed in float32."""
    batch = q.shape[0]
    dtype = q.dtype
    if not skip_reshape:
        dim_head = q.shape[-1] // heads
        q, k, v = (t.view(batch, -1, heads, dim_head).transpose(1, 2) for t in (q, k, v))
    scores = (q.float() @ k.float().transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if mask is not None:
        mask = mask if mask.ndim == 4 else mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    out = (scores.softmax(dim=-1) @ v.float()).to(dtype)
    if skip_output_reshape:
        return out
    return out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[3])


class ComfyAttnProcessor:
    """A diffusers attention processor that runs ComfyUI's attn1/attn2 patches and replacements.

    Outside `active()`, or when no attention patch is set, it defers to the processor it replaced.
    """

    def __init__(self, kind: str, original: Any) -> None:
        self.kind = kind  # "attn1" (self-attention) or "attn2" (cross-attention)
        self.original = original

    def __call__(
        self,
        attn: Any,
        hidden_states: Any,
        encoder_hidden_states: Any = None,
        attention_mask: Any = None,
        temb: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        call = _current.get()
        if call is None or not self._patched(call):
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )
        extra = {k: v for k, v in call.options.items() if k not in ("patches", "patches_replace")}
        extra.update(n_heads=attn.heads, dim_head=attn.inner_dim // attn.heads, attn_precision=None)
        n, context, value = hidden_states, encoder_hidden_states, None
        for patch in call.patches.get(f"{self.kind}_patch", []):
            context = n if context is None else context
            value = context if value is None else value
            n, context, value = patch(n, context, value, extra)
        context = n if context is None else context
        value = context if value is None else value
        q, k, v = attn.to_q(n), attn.to_k(context), attn.to_v(value)
        replace = self._replacement(call)
        out = replace(q, k, v, extra) if replace is not None else optimized_attention(q, k, v, attn.heads)
        out = attn.to_out[1](attn.to_out[0](out))
        for patch in call.patches.get(f"{self.kind}_output_patch", []):
            out = patch(out, extra)
        return out

    def _patched(self, call: _Call) -> bool:
        names = (f"{self.kind}_patch", f"{self.kind}_output_patch")
        return any(call.patches.get(name) for name in names) or self._replacement(call) is not None

    def _replacement(self, call: _Call) -> Any:
        table = call.replace.get(self.kind, {})
        block = call.options.get("block")
        if not table or block is None:
            return None
        with_index = (block[0], block[1], call.options.get("block_index", 0))
        return table.get(with_index, table.get(block))


@dataclass(frozen=True)
class BlockLayout:
    """Where ComfyUI's block ids sit in a diffusers UNet of a given config."""

    layers: int  # resnets per down level (up levels have one more)
    levels: int

    def input_id(self, level: int, index: int) -> int:
        return 1 + level * (self.layers + 1) + index

    def output_id(self, level: int, index: int) -> int:
        return level * (self.layers + 1) + index

    def block_ids(self) -> dict[str, list[tuple[str, int]]]:
        """Every block id ComfyUI would report for this layout, by kind."""
        inputs = [("input", 0)]
        for level in range(self.levels):
            inputs += [("input", self.input_id(level, j)) for j in range(self.layers)]
            if level < self.levels - 1:
                inputs.append(("input", self.input_id(level, self.layers)))
        outputs = [("output", i) for i in range(self.levels * (self.layers + 1))]
        return {"input": inputs, "middle": [("middle", 0)], "output": outputs}


def layout(unet: Any) -> BlockLayout:
    return BlockLayout(int(unet.config.layers_per_block), len(unet.config.block_out_channels))


def install(unet: Any) -> None:
    """Add the hooks and processors to `unet` (once; later calls do nothing)."""
    if getattr(unet, _MARK, False):
        return
    if not hasattr(unet, "down_blocks"):  # not a UNet (a transformer family, a test stub): no block ids
        setattr(unet, _MARK, True)
        return
    shape = layout(unet)
    _input_block(unet.conv_in, ("input", 0), unet.conv_in)
    for level, down in enumerate(unet.down_blocks):
        for j, resnet in enumerate(down.resnets):
            attentions = getattr(down, "attentions", None)
            last = attentions[j] if attentions is not None else resnet
            _input_block(resnet, ("input", shape.input_id(level, j)), last)
        for sampler in down.downsamplers or []:
            _input_block(sampler, ("input", shape.input_id(level, shape.layers)), sampler)
    unet.mid_block.register_forward_pre_hook(_set_block(("middle", 0)))
    for level, up in enumerate(unet.up_blocks):
        for j, resnet in enumerate(up.resnets):
            resnet.register_forward_pre_hook(_output_block(("output", shape.output_id(level, j))))
    for module in unet.modules():
        if type(module).__name__ == "Transformer2DModel":
            _transformer(module)
    setattr(unet, _MARK, True)


def _set_block(block: tuple[str, int]) -> Any:
    def hook(module: Any, args: Any) -> None:
        call = _current.get()
        if call is not None:
            call.options["block"] = block

    return hook


def _input_block(first: Any, block: tuple[str, int], last: Any) -> None:
    """Mark `block` when `first` starts; after `last`, run input_block_patch and record the skip."""
    first.register_forward_pre_hook(_set_block(block))

    def after(module: Any, args: Any, output: Any) -> Any:
        call = _current.get()
        if call is None:
            return None
        h = output[0] if isinstance(output, tuple) else output
        for patch in call.patches.get("input_block_patch", []):
            h = patch(h, call.options)
        call.skips.append(h)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    last.register_forward_hook(after)


def _output_block(block: tuple[str, int]) -> Any:
    """diffusers concatenates h with the skip before the resnet; split, patch, and join again."""

    def hook(module: Any, args: Any) -> Any:
        call = _current.get()
        if call is None:
            return None
        call.options["block"] = block
        skip = call.skips.pop() if call.skips else None
        patches = call.patches.get("output_block_patch", [])
        if not patches or skip is None:
            return None
        joined = args[0]
        h, hsp = joined[:, : joined.shape[1] - skip.shape[1]], joined[:, joined.shape[1] - skip.shape[1] :]
        for patch in patches:
            h, hsp = patch(h, hsp, call.options)
        return (torch.cat([h, hsp], dim=1), *args[1:])

    return hook


def _transformer(module: Any) -> None:
    """transformer_index counts transformer stacks; block_index is a block's place within its stack."""

    def before(mod: Any, args: Any, kwargs: Any) -> None:
        call = _current.get()
        if call is not None:
            hidden = args[0] if args else kwargs.get("hidden_states")
            call.options["activations_shape"] = list(hidden.shape)

    def after(mod: Any, args: Any, output: Any) -> None:
        call = _current.get()
        if call is not None and "transformer_index" in call.options:
            call.options["transformer_index"] += 1

    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after)
    for index, block in enumerate(module.transformer_blocks):
        block.register_forward_pre_hook(_block_index(index))
        if not hasattr(block, "fuser"):  # a GLIGEN UNet of diffusers' own keeps its fusers
            block.fuser = _MiddlePatches()
            block.register_forward_pre_hook(_open_middle_slot, with_kwargs=True)
        for kind in ("attn1", "attn2"):
            attention = getattr(block, kind, None)
            if attention is not None:
                attention.set_processor(ComfyAttnProcessor(kind, attention.processor))


def _block_index(index: int) -> Any:
    def hook(module: Any, args: Any) -> None:
        call = _current.get()
        if call is not None:
            call.options["block_index"] = index

    return hook


class _MiddlePatches(torch.nn.Module):
    """ComfyUI's middle_patch point (after self-attention, before cross-attention) is the slot where a
    diffusers BasicTransformerBlock calls its GLIGEN `fuser`; this stand-in fuser runs the patches."""

    def forward(self, x: Any, objs: Any = None) -> Any:
        call = _current.get()
        if call is None:
            return x
        extra = {k: v for k, v in call.options.items() if k not in ("patches", "patches_replace")}
        for patch in call.patches.get("middle_patch", []):
            x = patch(x, extra)
        return x


def _open_middle_slot(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """With middle patches set, pass the block the `gligen` argument that makes it call its fuser."""
    call = _current.get()
    if call is None or not call.patches.get("middle_patch"):
        return None
    extra = dict(kwargs.get("cross_attention_kwargs") or {})
    extra["gligen"] = {"objs": None}
    return args, {**kwargs, "cross_attention_kwargs": extra}
