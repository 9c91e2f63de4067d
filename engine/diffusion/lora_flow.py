"""LoRAs on the flow transformers (SD3/SD3.5, Flux, Chroma, Z-Image, Qwen-Image), in the key formats
ComfyUI reads for them.

Loom runs these models in diffusers' layout, where q, k and v are separate Linears, while most LoRAs for
them are trained on the reference layout (fused `qkv`, Flux's `linear1` = q|k|v|mlp, scale/shift swaps):
* diffusers / PEFT names: `transformer.<module>`, `base_model.model.<module>`, `lora_transformer_<module
  with _>`, SimpleTuner's `lycoris_<module with _>`, or the bare module — applied as they are;
* reference names: `diffusion_model.<module>`, `model.diffusion_model.<module>`, `lora_unet_<module
  with _>`, or the bare module — each split into the diffusers weights its rows went to.
Which rows went where is recorded when the model is loaded (`record_rows`): the family's converter is run
once on stand-in tensors whose values are their own (key, row) labels, so the map is whatever the
converter does (chunks, splits, swaps), with no second copy of it. A LoRA's up matrix is split by rows
the same way, which is exact: (up @ down)[rows] = up[rows] @ down.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch

from engine.diffusion.lora import LoraError, _checked, _pairs

ROW_BITS = 20  # up to ~10⁶ rows per weight; labels stay exact in float64
_rows: weakref.WeakKeyDictionary[Any, dict[str, list[tuple[str, Any]]]] = weakref.WeakKeyDictionary()
PREFIX = "diffusion_model."


def record_rows(
    transformer: Any,
    convert: Callable[[dict[str, Any]], Mapping[str, Any]],
    shapes: Mapping[str, tuple[int, ...]],
) -> None:
    """Remember, for each reference-layout weight matrix of `transformer`'s file, which rows of which
    diffusers weights it became. A converter that cannot run on stand-ins leaves the map empty."""
    keys = sorted(shapes)
    labels = {
        key: (torch.arange(shape[0] if shape else 1, dtype=torch.float64) + (index << ROW_BITS)).reshape(
            -1, 1
        )
        for index, (key, shape) in enumerate((k, shapes[k]) for k in keys)
    }
    try:
        converted = convert(labels)
    except (KeyError, RuntimeError, ValueError, IndexError):
        _rows[transformer] = {}
        return
    own = {name for name, _ in transformer.named_parameters()}
    found: dict[str, list[tuple[str, Any]]] = {}
    for name, value in converted.items():
        if name not in own or not name.endswith(".weight") or value.ndim != 2 or value.shape[1] != 1:
            continue
        label = value[:, 0].long()
        sources = (label >> ROW_BITS).unique()
        if len(sources) != 1:
            continue
        source = keys[int(sources[0])]
        if source.endswith(".weight") and len(shapes[source]) >= 2:
            found.setdefault(source.removesuffix(".weight"), []).append((name, label & ((1 << ROW_BITS) - 1)))
    _rows[transformer] = found


def _aliases(transformer: Any) -> dict[str, list[tuple[str, Any]]]:
    """LoRA layer name → [(diffusers weight, rows of the LoRA's up matrix or None)]."""
    aliases: dict[str, list[tuple[str, Any]]] = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear):
            target = [(name + ".weight", None)]
            for alias in ("transformer." + name, "base_model.model." + name, name):
                aliases[alias] = target
            aliases["lora_transformer_" + name.replace(".", "_")] = target
            aliases["lycoris_" + name.replace(".", "_")] = target  # SimpleTuner's LyCORIS names
    for base, targets in _rows.get(transformer, {}).items():
        for alias in (PREFIX + base, "model." + PREFIX + base, base):
            aliases.setdefault(alias, targets)
        aliases.setdefault("lora_unet_" + base.replace(".", "_"), targets)
    return aliases


def flow_lora_patches(state: Mapping[str, Any], transformer: Any) -> tuple[dict[str, Any], set[str]]:
    """ModelPatcher weight patches (ComfyUI's `("lora", …)` entries keyed `diffusion_model.<diffusers
    name>`) for the LoRA layers that fit the transformer, and the layers that do not."""
    aliases = _aliases(transformer)
    patches: dict[str, Any] = {}
    unknown: set[str] = set()
    for base, parts in _pairs(state).items():
        targets = aliases.get(base)
        if targets is None:
            unknown.add(base)
            continue
        up, down, alpha = _checked(base, parts)
        if alpha is None:
            alpha = float(down.shape[0])  # no alpha: scale 1, as ComfyUI
        for weight, rows in targets:
            part = up if rows is None else up[rows]
            if part.shape[0] != transformer.get_parameter(weight).shape[0]:
                raise LoraError(f"LoRA layer {base!r} does not fit {weight} (shape {tuple(up.shape)})")
            patches[PREFIX + weight] = ("lora", (part, down, alpha, None, None, None))
    return patches, unknown
