"""Standalone text-encoder files → CLIP (what `comfy.sd.load_clip` loads from models/clip).

Files in the transformers layout (`text_model.encoder.layers.…`, as ComfyUI saves CLIP-L/CLIP-G) or an
open_clip layout (`transformer.resblocks.…`). The family follows from the encoders given: one of width
768 is SD1.x's CLIP-L, 1024 SD2.x's OpenCLIP-H, 1280 the SDXL refiner's CLIP-G; CLIP-L with CLIP-G is
SDXL (an encoder of another width is CLIP-G if it has a text projection, CLIP-L otherwise).
Other text encoders (T5, Llama…) are not Stable Diffusion 1/2/XL models and are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.diffusion.clip import CLIP
from engine.diffusion.devices import manager
from engine.models.errors import UnsupportedModelError

_BY_WIDTH = {768: "l", 1024: "h", 1280: "g"}
_FAMILIES = {("l",): "sd1", ("h",): "sd2", ("g",): "sdxl_refiner", ("g", "l"): "sdxl"}


def clip_from_state_dicts(states: list[dict[str, Any]], names: list[str], embedding_directory: Any) -> CLIP:
    """A CLIP from one state dict per text encoder (any order)."""
    built: dict[str, Any] = {}
    for state, name in zip(states, names, strict=True):
        kind, encoder = _encoder(state, name)
        built[kind] = encoder
    family = _FAMILIES.get(tuple(sorted(built)))
    if family is None:
        raise UnsupportedModelError(
            f"{', '.join(names)}: text encoders {sorted(built)} are no SD1/SD2/SDXL set"
        )
    order = {"sd1": ["l"], "sd2": ["h"], "sdxl_refiner": ["g"], "sdxl": ["l", "g"]}[family]
    encoders = tuple(built[k] for k in order)
    pads = tuple(49407 if k == "l" else 0 for k in order)
    return CLIP(encoders, pads, family, embedding_directory=embedding_directory)


def _encoder(state: dict[str, Any], name: str) -> tuple[str, Any]:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.models.keymap import text_from_original, text_state_for_model

    prefix = _prefix(state, name)
    layout = "open_clip" if any(k.startswith(prefix + "transformer.resblocks.") for k in state) else "hf"
    canonical = text_from_original(state, prefix, layout)
    token = canonical.get("embeddings.token_embedding.weight")
    if token is None:
        raise UnsupportedModelError(f"{name}: not a CLIP text encoder (no token embedding)")
    width = int(token.shape[1])
    projection = canonical.get("text_projection.weight")
    # Real encoders are told apart by width; other (test-sized) ones by CLIP-G's projection.
    kind = _BY_WIDTH.get(width, "g" if projection is not None else "l")
    layers = len({k.split(".")[2] for k in canonical if k.startswith("encoder.layers.")})
    config = CLIPTextConfig(
        vocab_size=int(token.shape[0]),
        hidden_size=width,
        intermediate_size=int(canonical["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=width // 64,
        max_position_embeddings=int(canonical["embeddings.position_embedding.weight"].shape[0]),
        hidden_act="quick_gelu" if kind == "l" else "gelu",
        projection_dim=int(projection.shape[0]) if projection is not None else width,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407 if kind == "l" else 0,
    )
    model: Any = CLIPTextModelWithProjection(config) if kind == "g" else CLIPTextModel(config)
    missing, _ = model.load_state_dict(text_state_for_model(canonical, model), strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing:
        raise UnsupportedModelError(f"{name}: text encoder weights missing, e.g. {missing[:3]}")
    model.eval().requires_grad_(False).to(
        manager().dtype("text") if manager().device.type != "cpu" else torch.float32
    )
    return kind, model


def _prefix(state: dict[str, Any], name: str) -> str:
    """The key prefix the encoder's weights sit under (`` or e.g. `clip_l.transformer.`)."""
    for key in state:
        for marker in (
            "text_model.embeddings.token_embedding.weight",
            "embeddings.token_embedding.weight",
            "token_embedding.weight",
        ):
            if key.endswith(marker):
                return key[: -len(marker)]
    raise UnsupportedModelError(f"{name}: not a CLIP text encoder (no token embedding)")


def load_clip_files(paths: list[str | Path], embedding_directory: Any) -> CLIP:
    from engine.models.files import load_state_dict

    states = [load_state_dict(Path(p))[0] for p in paths]
    return clip_from_state_dicts(states, [Path(p).name for p in paths], embedding_directory)
