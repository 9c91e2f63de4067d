"""STYLE_MODEL: TencentARC's T2I-Adapter style model ("T2I-Adapter: Learning Adapters to Dig out More
Controllable Ability for Text-to-Image Diffusion Models", Mou et al. 2023).

A small transformer reads the CLIP vision encoder's last hidden state together with learned style tokens
(`style_embedding`, [1, tokens, width]) and projects the style tokens to the text encoder's width
(`proj`, [width, context]); StyleModelApply appends them to the prompt's tokens. The file's keys are
those of the original code (`transformer_layes.N.attn.in_proj_weight`, `ln_pre`, `ln_post`, ...); the
widths and depth are read from the shapes, with 8 attention heads as in the released model.

Black Forest Labs' Flux Redux (`flux1-redux-dev.safetensors`) is a STYLE_MODEL too: two linear layers,
`redux_up` (SigLIP width → 3 × T5 width) and `redux_down` (→ T5 width) with SiLU between, turning every
SigLIP patch token of the reference image (729 at 384 px) into a token appended to the Flux prompt.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.models.errors import UnsupportedModelError

HEADS = 8


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """A pre-norm transformer layer in open_clip's layout (attention on sequence-first tensors)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", _QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class StyleAdapter(nn.Module):
    """Style tokens [B, tokens, context] from CLIP vision tokens [B, patches + 1, width]."""

    def __init__(self, width: int, context_dim: int, layers: int, tokens: int, heads: int = HEADS) -> None:
        super().__init__()
        self.transformer_layes = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])
        self.num_token = tokens
        self.style_embedding = nn.Parameter(torch.zeros(1, tokens, width))
        self.ln_post = nn.LayerNorm(width)
        self.ln_pre = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, context_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        style = self.style_embedding.to(x.dtype).expand(x.shape[0], -1, -1)
        x = self.ln_pre(torch.cat([x, style], dim=1))
        x = self.transformer_layes(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, -self.num_token :, :]) @ self.proj


class ReduxImageEncoder(nn.Module):
    """Flux Redux: SigLIP tokens [B, T, vision width] → prompt tokens [B, T, text width]."""

    def __init__(self, vision_width: int, text_width: int) -> None:
        super().__init__()
        self.redux_up = nn.Linear(vision_width, text_width * 3)
        self.redux_down = nn.Linear(text_width * 3, text_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.redux_down(nn.functional.silu(self.redux_up(x)))


class StyleModel:
    """What travels on STYLE_MODEL links (ComfyUI's comfy.sd.StyleModel API)."""

    def __init__(self, model: StyleAdapter | ReduxImageEncoder) -> None:
        self.model = model

    @property
    def input_width(self) -> int:
        """The width of the vision tokens the model reads."""
        if isinstance(self.model, ReduxImageEncoder):
            return int(self.model.redux_up.in_features)
        return int(self.model.style_embedding.shape[-1])

    def get_cond(self, clip_vision_output: Any) -> torch.Tensor:
        """Style tokens for a CLIP_VISION_OUTPUT (from its last hidden state)."""
        hidden = clip_vision_output.last_hidden_state
        width = self.input_width
        if hidden.shape[-1] != width:
            needs = "SigLIP (sigclip_vision_patch14_384)" if self.is_redux else "CLIP-ViT-L/14"
            raise ValueError(
                f"the style model reads vision tokens {width} wide, but the CLIP vision output's are "
                f"{hidden.shape[-1]} wide (the released model needs {needs})"
            )
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            return self.model(hidden.to(dtype)).float()

    @property
    def is_redux(self) -> bool:
        return isinstance(self.model, ReduxImageEncoder)


def style_model_from_state(state: Mapping[str, torch.Tensor], name: str = "style model") -> StyleModel:
    if "redux_down.weight" in state:
        return _redux_from_state(state, name)
    if "style_embedding" not in state:
        raise UnsupportedModelError(
            f"{name}: not a T2I-Adapter style model (no style_embedding); found keys like "
            f"{', '.join(list(state)[:3])}"
        )
    _, tokens, width = state["style_embedding"].shape
    context = state["proj"].shape[1]
    layers = len({m.group(1) for k in state if (m := re.match(r"transformer_layes\.(\d+)\.", k))})
    if width % HEADS:
        raise UnsupportedModelError(f"{name}: width {width} does not split into {HEADS} heads")
    model = StyleAdapter(width, context, layers, tokens)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise UnsupportedModelError(f"{name}: weights missing, e.g. {missing[:3]}")
    try:
        model.load_state_dict({k: state[k].float() for k in own})
    except RuntimeError as exc:
        raise UnsupportedModelError(f"{name}: weights do not fit: {str(exc).splitlines()[0]}") from exc
    return StyleModel(model.eval().requires_grad_(False))


def _redux_from_state(state: Mapping[str, torch.Tensor], name: str) -> StyleModel:
    up, down = state.get("redux_up.weight"), state["redux_down.weight"]
    if (
        up is None
        or up.ndim != 2
        or down.ndim != 2
        or down.shape[1] != up.shape[0]
        or up.shape[0] != 3 * down.shape[0]
    ):
        raise UnsupportedModelError(
            f"{name}: a Flux Redux model needs redux_up.weight [3 × text width, vision width] and "
            f"redux_down.weight [text width, 3 × text width]; got "
            f"{None if up is None else tuple(up.shape)} and {tuple(down.shape)}"
        )
    model = ReduxImageEncoder(int(up.shape[1]), int(down.shape[0]))
    try:
        model.load_state_dict({k: state[k].float() for k in model.state_dict()})
    except (KeyError, RuntimeError) as exc:
        raise UnsupportedModelError(f"{name}: Flux Redux weights do not fit: {exc}") from exc
    return StyleModel(model.eval().requires_grad_(False))


def load_style_model(path: str | Path) -> StyleModel:
    from engine.models.files import load_state_dict

    state, _ = load_state_dict(path)
    return style_model_from_state(state, Path(path).name)


def append_style_tokens(
    conditioning: list[Any], tokens: torch.Tensor, strength: float, strength_type: str
) -> list[Any]:
    """StyleModelApply: every image's style tokens, in one row, appended to each entry's prompt tokens.

    "multiply" scales the tokens by `strength`. "attn_bias" (or an entry that already has an
    `attention_mask`) records, as ComfyUI does, a [B, n, n] additive mask over text + style (+ reference)
    tokens with log(strength) towards the style tokens; ComfyUI's UNet models (SD1.x, SD2.x, SDXL) do not
    read it, and neither do Loom's, so there the tokens then act at full strength."""
    import math

    cond = tokens.flatten(start_dim=0, end_dim=1).unsqueeze(dim=0)
    if strength_type == "multiply":
        cond = cond * strength
    n = cond.shape[1]
    out = []
    for text, options in conditioning:
        options = dict(options)
        if "attention_mask" in options or (strength_type == "attn_bias" and strength != 1.0):
            bias = math.log(strength) if strength_type == "attn_bias" and strength > 0 else 0.0
            bias = -math.inf if strength_type == "attn_bias" and strength <= 0 else bias
            options["attention_mask"] = _grown_mask(options, text, n, bias)
            options["attention_mask_img_shape"] = options.get("attention_mask_img_shape", (1, 1))
        out.append([torch.cat((text, cond.to(text.device, text.dtype)), dim=1), options])
    return out


def _grown_mask(options: dict[str, Any], text: torch.Tensor, n: int, bias: float) -> torch.Tensor:
    """The entry's mask with room for n style tokens after the text tokens (and before any reference ones)."""
    ref_h, ref_w = options.get("attention_mask_img_shape", (1, 1))
    n_ref, n_txt = ref_h * ref_w, text.shape[1]
    mask = options.get("attention_mask")
    if mask is None:
        mask = torch.zeros((text.shape[0], n_txt + n_ref, n_txt + n_ref), dtype=torch.float16)
    if mask.dtype == torch.bool:
        mask = torch.log(mask.to(dtype=torch.float16))
    grown = torch.zeros((text.shape[0], n_txt + n + n_ref, n_txt + n + n_ref), dtype=torch.float16)
    grown[:, :n_txt, :n_txt] = mask[:, :n_txt, :n_txt]
    grown[:, :n_txt, n_txt + n :] = mask[:, :n_txt, n_txt:]
    grown[:, n_txt + n :, :n_txt] = mask[:, n_txt:, :n_txt]
    grown[:, n_txt + n :, n_txt + n :] = mask[:, n_txt:, n_txt:]
    grown[:, :n_txt, n_txt : n_txt + n] = bias
    grown[:, n_txt + n :, n_txt : n_txt + n] = bias
    return grown.to(text.device)
