"""GLIGEN ("GLIGEN: Open-Set Grounded Text-to-Image Generation", Li et al. 2023): text boxes that place
objects, through gated self-attention layers added after each UNet transformer's self-attention.

A GLIGEN file in ComfyUI's layout holds `position_net.*` (the grounding tokenizer: Fourier-embedded boxes
joined with each phrase's pooled CLIP embedding) and, for each UNet transformer, its `…fuser.*` weights
(`input_blocks.N.1.transformer_blocks.0.fuser.…`, then middle_block, then output_blocks). They are built on
diffusers' own GLIGEN modules (`GLIGENTextBoundingboxProjection`, `GatedSelfAttentionDense`), whose names
match. GLIGENTextBoxApply puts `gligen = ("position", GLIGEN, [(pooled, h, w, y, x), ...])` (sizes in latent
pixels) on CONDITIONING; while sampling, each entry that carries one runs the fuser of every transformer
(ComfyUI's `middle_patch`, counted by `transformer_index`) on its own rows of the batch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from engine.models.errors import UnsupportedModelError

MAX_OBJECTS = 30
_FUSER = re.compile(r"(?:.*\.)?(input_blocks|middle_block|output_blocks)\.(\d+)\..*?\.fuser\.(.+)")
_ORDER = {"input_blocks": 0, "middle_block": 1, "output_blocks": 2}


class Gligen(torch.nn.Module):
    """The grounding tokenizer and one gated self-attention layer per UNet transformer."""

    def __init__(
        self, fusers: Sequence[torch.nn.Module], position_net: torch.nn.Module, key_dim: int
    ) -> None:
        super().__init__()
        self.module_list = torch.nn.ModuleList(fusers)
        self.position_net = position_net
        self.key_dim = key_dim
        self.max_objs = MAX_OBJECTS

    def objects(self, latent_shape: Any, position_params: list[Any] | None, device: Any) -> torch.Tensor:
        """Grounding tokens [batch, 30, width] for boxes (None: no boxes, the null tokens everywhere)."""
        batch, _, height, width = latent_shape
        boxes = torch.zeros(self.max_objs, 4)
        masks = torch.zeros(self.max_objs)
        phrases = torch.zeros(self.max_objs, self.key_dim)
        for index, (pooled, h, w, y, x) in enumerate((position_params or [])[: self.max_objs]):
            boxes[index] = torch.tensor((x / width, y / height, (x + w) / width, (y + h) / height))
            masks[index] = 1.0
            phrases[index] = pooled.reshape(-1)[: self.key_dim].float().cpu()
        dtype = next(self.parameters()).dtype
        with torch.no_grad():
            objs = self.position_net(
                boxes=boxes.unsqueeze(0).to(device, dtype),
                masks=masks.unsqueeze(0).to(device, dtype),
                positive_embeddings=phrases.unsqueeze(0).to(device, dtype),
            )
        return objs.expand(batch, -1, -1)


def load_gligen(state: Mapping[str, torch.Tensor], name: str = "GLIGEN") -> Gligen:
    """A GLIGEN model from a state dict in ComfyUI's layout (see the module docstring)."""
    from diffusers.models.attention import GatedSelfAttentionDense
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

    groups: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _FUSER.fullmatch(key)
        if match:
            place = (_ORDER[match.group(1)], int(match.group(2)))
            groups.setdefault(place, {})[match.group(3)] = tensor
    prefix = next(
        (
            k[: -len("null_positive_feature")]
            for k in state
            if k.endswith("position_net.null_positive_feature")
        ),
        None,
    )
    if not groups or prefix is None:
        raise UnsupportedModelError(
            f"{name}: not a GLIGEN model (expected position_net.* and …fuser.* weights); "
            f"found keys like {', '.join(list(state)[:3])}"
        )
    fusers: list[torch.nn.Module] = []
    key_dim = 768
    for place in sorted(groups):
        weights = groups[place]
        query_dim, key_dim = weights["linear.weight"].shape
        # ComfyUI's rule: SD1.x (768-wide context) 8 heads, others 64 channels a head; widths that 64
        # does not divide (small models) take 8 heads too.
        d_head = query_dim // 8 if key_dim == 768 or query_dim % 64 else 64
        fuser = GatedSelfAttentionDense(query_dim, key_dim, query_dim // d_head, d_head)
        _load(fuser, weights, f"{name}: fuser {len(fusers)}")
        fusers.append(fuser)
    net_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    in_dim = net_state["null_positive_feature"].shape[0]
    out_dim = net_state["linears.4.weight"].shape[0]
    position_net = GLIGENTextBoundingboxProjection(
        positive_len=in_dim, out_dim=out_dim, feature_type="text-only"
    )
    _load(position_net, net_state, f"{name}: position_net")
    return Gligen(fusers, position_net, in_dim).eval().requires_grad_(False)


class GligenPatcher:
    """What travels on GLIGEN links: ComfyUI wraps the module in a ModelPatcher, so packs reach it as
    `.model`."""

    def __init__(self, model: Gligen) -> None:
        self.model = model
        self.load_device = torch.device("cpu")
        self.offload_device = torch.device("cpu")


def load_gligen_file(path: str | Path) -> GligenPatcher:
    """GLIGENLoader: a GLIGEN file (safetensors or weights-only pickle) in ComfyUI's layout."""
    from engine.models.files import load_state_dict

    state, _ = load_state_dict(path)
    return GligenPatcher(load_gligen(state, Path(path).name))


def _load(module: torch.nn.Module, weights: Mapping[str, torch.Tensor], what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    if missing:
        raise UnsupportedModelError(f"{what}: weights missing from the file, e.g. {missing[:3]}")
    for key, tensor in own.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise UnsupportedModelError(
                f"{what}: {key} has shape {tuple(weights[key].shape)}, expected {tuple(tensor.shape)}"
            )
    module.load_state_dict({k: weights[k].float() for k in own})


def with_gligen_patch(
    options: dict[str, Any], entries: list[dict[str, Any]], latent_shape: Any, batch: int
) -> dict[str, Any]:
    """transformer_options with a middle_patch that runs each entry's GLIGEN on its rows (`batch` rows an
    entry, in order); the options unchanged when no entry carries one."""
    if not any("gligen" in entry for entry in entries):
        return options
    from engine.diffusion.devices import manager

    plans: list[tuple[Gligen, torch.Tensor] | None] = []
    for entry in entries:
        gligen = entry.get("gligen")
        if gligen is None:
            plans.append(None)
            continue
        kind, model, params = gligen[0], _module(gligen[1]), (gligen[2] if len(gligen) > 2 else None)
        device = manager().use(model)
        shape = (batch, *latent_shape[1:])
        plans.append((model, model.objects(shape, params if kind == "position" else None, device)))

    def middle_patch(x: torch.Tensor, extra_options: dict[str, Any]) -> torch.Tensor:
        index = extra_options.get("transformer_index", 0)
        chunks = list(x.chunk(len(plans)))
        for row, plan in enumerate(plans):
            if plan is not None and index < len(plan[0].module_list):
                model, objs = plan
                fuser = model.module_list[index]
                chunks[row] = fuser(chunks[row].to(objs.dtype), objs).to(x.dtype)
        return torch.cat(chunks)

    patches = dict(options.get("patches", {}))
    patches["middle_patch"] = [*patches.get("middle_patch", []), middle_patch]
    return {**options, "patches": patches}


def _module(gligen: Any) -> Gligen:
    """The Gligen module inside a GLIGEN handle (ComfyUI wraps it in a ModelPatcher as `.model`)."""
    return gligen if isinstance(gligen, Gligen) else gligen.model
