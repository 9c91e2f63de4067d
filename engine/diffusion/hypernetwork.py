"""A1111 hypernetworks: small MLPs that rewrite the context of every attention layer's keys and values.

The file (`torch.save` of a dict, read with safe loading) maps a context width (an int: 768 for SD1's
cross-attention, 320/640/1280 for its self-attention) to two state dicts, the key and the value
network, whose `.weight`/`.bias` entries are Linear layers (and LayerNorms after each when
`is_layer_norm`) in order; `activation_func`, `activate_output`, `is_layer_norm`, `use_dropout` and
`last_layer_dropout` describe the layers between them. The patch runs as an attn1 and attn2 patch (the
mechanism node packs use): `k = k + net_k(k) * strength`, `v = v + net_v(v) * strength`, on the context
before the key and value projections, for each attention whose context has a width the file covers.

The layer sequence follows ComfyUI's reading of the file, including its quirk that with layer norms the
final Linear counts as "not last" (the last entry is its LayerNorm), so it is followed by the
activation. Dropout is left out: at inference it must do nothing. (ComfyUI leaves its dropout layers in
training mode, so with `use_dropout` its output is random; Loom's is the network's expected output.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

ACTIVATIONS: dict[str, Callable[[], torch.nn.Module]] = {
    "linear": torch.nn.Identity,
    "relu": torch.nn.ReLU,
    "leakyrelu": torch.nn.LeakyReLU,
    "elu": torch.nn.ELU,
    "swish": torch.nn.Hardswish,  # what ComfyUI (and so its users' results) use for "swish"
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "softsign": torch.nn.Softsign,
    "mish": torch.nn.Mish,
}


class HypernetworkError(ValueError):
    """A hypernetwork file Loom cannot read or does not support."""


def read_hypernetwork(path: Path) -> dict[Any, Any]:
    """The file's dict, loaded without running pickled code."""
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HypernetworkError(f"{path.name}: not a readable hypernetwork file ({exc})") from exc
    if not isinstance(data, dict):
        raise HypernetworkError(f"{path.name}: not a hypernetwork file (it holds a {type(data).__name__})")
    return data


def build_network(layers: Mapping[str, Any], options: Mapping[str, Any]) -> torch.nn.Sequential:
    """One key or value network from its state dict, as ComfyUI lays it out."""
    activation = options.get("activation_func", "linear")
    layer_norm = bool(options.get("is_layer_norm", False))
    names = [key[: -len(".weight")] for key in layers if key.endswith(".weight")]
    modules: list[torch.nn.Module] = []
    i = 0
    while i < len(names):
        weight, bias = layers[f"{names[i]}.weight"], layers[f"{names[i]}.bias"]
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight, "bias": bias})
        modules.append(linear)
        last = i == len(names) - 1
        if activation != "linear" and (not last or options.get("activate_output", False)):
            modules.append(ACTIVATIONS[activation]())
        if layer_norm:
            i += 1
            norm_weight = layers[f"{names[i]}.weight"]
            norm = torch.nn.LayerNorm(norm_weight.shape[0])
            norm.load_state_dict({"weight": norm_weight, "bias": layers[f"{names[i]}.bias"]})
            modules.append(norm)
        i += 1
    return torch.nn.Sequential(*modules).eval().requires_grad_(False)


class HypernetworkPatch:
    """An attn1/attn2 patch: (n, context, value, extra) → (n, context', value')."""

    def __init__(self, networks: dict[int, torch.nn.ModuleList], strength: float) -> None:
        self.networks = networks
        self.strength = strength

    def __call__(self, q: Any, k: Any, v: Any, extra_options: dict[str, Any]) -> tuple[Any, Any, Any]:
        pair = self.networks.get(int(k.shape[-1]))
        if pair is None:
            return q, k, v
        return q, k + self._run(pair[0], k) * self.strength, v + self._run(pair[1], v) * self.strength

    @staticmethod
    def _run(network: torch.nn.Module, x: Any) -> Any:
        """The network on x's device, in its own (float32) precision, cast back to x's dtype."""
        if next(network.parameters()).device != x.device:
            network.to(x.device)  # moved once, on first use on the sampling device
        dtype = next(network.parameters()).dtype
        with torch.no_grad():
            return network(x.to(dtype)).to(x.dtype)

    def to(self, device: Any) -> HypernetworkPatch:
        """Move (or cast) the networks, as ComfyUI's model_patches_to does with patches."""
        for width in self.networks:
            self.networks[width] = self.networks[width].to(device)
        return self


def load_hypernetwork_patch(path: Path, strength: float) -> HypernetworkPatch:
    """The patch of an A1111 hypernetwork file at `strength`."""
    data = read_hypernetwork(path)
    activation = data.get("activation_func", "linear")
    if activation not in ACTIVATIONS:
        raise HypernetworkError(
            f"{path.name}: activation {activation!r} is not supported ({', '.join(ACTIVATIONS)})"
        )
    networks: dict[int, torch.nn.ModuleList] = {}
    for key, value in data.items():
        try:
            width = int(key)
        except (TypeError, ValueError):
            continue  # the file's settings (layer_structure, name, step, ...)
        if not isinstance(value, (list, tuple)) or len(value) < 2:
            raise HypernetworkError(f"{path.name}: entry {key!r} is not a pair of key/value networks")
        try:
            networks[width] = torch.nn.ModuleList([build_network(value[i], data) for i in (0, 1)])
        except (KeyError, IndexError, RuntimeError) as exc:
            raise HypernetworkError(f"{path.name}: width {width}: malformed layers ({exc})") from exc
    if not networks:
        raise HypernetworkError(f"{path.name}: no networks (no entries keyed by a context width)")
    return HypernetworkPatch(networks, strength)
