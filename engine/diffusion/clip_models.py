"""`CLIP.cond_stage_model`: Loom's text encoders as ComfyUI's text-encoder model classes.

Packs with their own prompt encoders (advanced CLIP encode, prompt blending) test
`isinstance(clip.cond_stage_model, SDXLClipModel)`, set `set_clip_options({"layer": -2})` and call
`cond_stage_model.clip_l.encode_token_weights(windows)` themselves. These classes answer that over the
transformers modules (no copies): the family classes (`SD1ClipModel`, `SD2ClipModel`,
`SDXLClipModel`, `SDXLRefinerClipModel`) hold one `SDClipModel` (`SDXLClipG` for CLIP-G) per encoder,
named `clip_l` / `clip_h` / `clip_g`, whose `transformer.text_model` is the encoder. Each CLIP has its
own cond_stage_model, so its layer options and weight patches apply to what it encodes. They are not
constructible as in ComfyUI (from a config and dtype): Loom builds them from loaded encoders.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from engine.diffusion.clip_modules import Transformer, load_encoder_state
from engine.diffusion.devices import manager
from engine.diffusion.text_encode import encode_token_weights, encoder_options
from engine.diffusion.tokens import ENCODER_KEYS

if TYPE_CHECKING:
    from engine.diffusion.clip import CLIP


class SDClipModel(torch.nn.Module):
    """One text encoder: `transformer`, `layer` ("last"/"hidden"), `layer_idx`, `special_tokens`."""

    layer: str
    layer_idx: int | None
    return_projected_pooled: bool

    def __init__(self, clip: CLIP, index: int) -> None:
        super().__init__()
        encoder = clip.encoders[index]
        # T5 is its own `transformer` (ComfyUI names its weights `t5xxl.transformer.encoder.block.…`).
        self.transformer = encoder if _is_t5(encoder) else Transformer(encoder)
        self._owner = [clip]  # a list, so torch does not see the CLIP (it holds modules)
        self.index = index
        self.options = encoder_options(clip.family, clip.roles, index)
        self.num_layers = _depth(self.transformer)
        pad = clip.pad_ids[index]
        start = {} if self.options.start_id is None else {"start": self.options.start_id}
        self.special_tokens = {**start, "end": self.options.end_id, "pad": pad}
        self.layer_norm_hidden_state = self.options.norm_hidden
        self.options_default = (
            "last" if self.options.default_layer is None else "hidden",
            self.options.default_layer,
            self.options.projected_pooled,
        )
        self.reset_clip_options()

    def set_clip_options(self, options: dict[str, Any]) -> None:
        layer_idx = options.get("layer", self.layer_idx)
        self.return_projected_pooled = options.get("projected_pooled", self.return_projected_pooled)
        if layer_idx is None or abs(layer_idx) > self.num_layers:
            self.layer = "last"
        else:
            self.layer, self.layer_idx = "hidden", layer_idx

    def reset_clip_options(self) -> None:
        self.layer, self.layer_idx, self.return_projected_pooled = self.options_default

    def encode_token_weights(self, token_weight_pairs: list[list[tuple[Any, ...]]]) -> tuple[Any, Any]:
        """(cond [1, tokens, width], pooled) of this encoder's windows, with the CLIP's patches."""
        clip = self._owner[0]
        encoder = clip.encoders[self.index]
        options = replace(
            self.options,
            default_layer=None if self.layer == "last" else self.layer_idx,
            projected_pooled=bool(self.return_projected_pooled),
        )
        device = torch.device("cpu") if clip.device == "cpu" else manager().use(encoder)
        with clip.weights_patched(self.index):
            pad = self.special_tokens["pad"]
            return encode_token_weights(encoder, options, pad, token_weight_pairs, None, False, device)

    def encode(self, tokens: list[list[tuple[Any, ...]]]) -> tuple[Any, Any]:
        return self.encode_token_weights(tokens)

    def load_sd(self, sd: dict[str, Any]) -> Any:
        return self.transformer.load_state_dict(sd, strict=False)


class SDXLClipG(SDClipModel):
    """CLIP-G (SDXL's second encoder, the refiner's only one)."""


class _ClipFamily(torch.nn.Module):
    """A family's encoders under `clip_<key>`; `encode_token_weights({key: windows})` puts their
    conditioning side by side (cut to the shortest) and pools from the last encoder."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.family = clip.family
        self.keys = [key for key, _, _ in ENCODER_KEYS[clip.family]]
        for index, key in enumerate(self.keys):
            kind = SDXLClipG if key == "g" else SDClipModel
            self.add_module(f"clip_{key}", kind(clip, index))
        self.clip_name = self.keys[0]
        self.clip = f"clip_{self.clip_name}"
        self._encoders = clip.encoders
        self.dtypes = {next(clip.encoders[0].parameters()).dtype}

    def _parts(self) -> list[SDClipModel]:
        return [getattr(self, f"clip_{key}") for key in self.keys]

    def set_clip_options(self, options: dict[str, Any]) -> None:
        for part in self._parts():
            part.set_clip_options(options)

    def reset_clip_options(self) -> None:
        for part in self._parts():
            part.reset_clip_options()

    def encode_token_weights(self, token_weight_pairs: dict[str, Any]) -> tuple[Any, Any]:
        missing = [key for key in self.keys if key not in token_weight_pairs]
        if missing:
            raise ValueError(f"tokens for a {self.family} CLIP need the keys {self.keys}; {missing} missing")
        pairs = zip(self.keys, self._parts(), strict=True)
        outputs = [part.encode_token_weights(token_weight_pairs[key]) for key, part in pairs]
        length = min(cond.shape[1] for cond, _ in outputs)
        return torch.cat([cond[:, :length] for cond, _ in outputs], dim=-1), outputs[-1][1]

    def load_sd(self, sd: dict[str, Any]) -> Any:
        return load_encoder_state(self.family, self._encoders, sd)


class SD1ClipModel(_ClipFamily):
    """SD1.x: CLIP-L as `clip_l`."""


class SD2ClipModel(SD1ClipModel):
    """SD2.x: OpenCLIP-H as `clip_h`."""


class SDXLRefinerClipModel(SD1ClipModel):
    """The SDXL refiner: CLIP-G as `clip_g`."""


class SDXLClipModel(_ClipFamily):
    """SDXL: `clip_l` and `clip_g`; conditioning is both side by side, pooled from CLIP-G."""


_CLASSES: dict[str, type[torch.nn.Module]] = {
    "sd1": SD1ClipModel,
    "sd2": SD2ClipModel,
    "sdxl": SDXLClipModel,
    "sdxl_refiner": SDXLRefinerClipModel,
}


def cond_stage_model(clip: CLIP) -> torch.nn.Module:
    if clip.roles:
        from engine.diffusion.clip_models_flow import flow_cond_stage_model

        return flow_cond_stage_model(clip)
    return _CLASSES[clip.family](clip)


def _is_t5(encoder: Any) -> bool:
    """T5 and the Qwen language models are their own `transformer` (not CLIP's `text_model` wrapper)."""
    from engine.diffusion.llm_encoder import LLMEncoder

    if isinstance(encoder, LLMEncoder):
        return True
    return not hasattr(encoder, "text_model") and hasattr(getattr(encoder, "encoder", None), "block")


def _depth(transformer: Any) -> int:
    """Layers of a CLIP (`text_model.encoder.layers`), T5 (`encoder.block`) or Qwen (`model.layers`)."""
    llm = getattr(transformer, "model", None)
    if llm is not None and hasattr(llm, "layers"):
        return len(llm.layers)
    inner: Any = getattr(transformer, "text_model", transformer).encoder
    return len(inner.layers if hasattr(inner, "layers") else inner.block)
