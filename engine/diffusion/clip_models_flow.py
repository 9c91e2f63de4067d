"""`CLIP.cond_stage_model` of the flow families: SD3 (CLIP-L + CLIP-G + T5-XXL) and Flux (CLIP-L + T5-XXL).

As ComfyUI composes their conditioning from the token dict {"l", "g", "t5xxl"}:
* SD3: CLIP-L's and CLIP-G's penultimate hidden states side by side (cut to the shorter), zero-padded to
  T5's width, then T5's sequence appended; pooled = CLIP-L's pooler output (unprojected) next to CLIP-G's
  projected one. Only the encoders a CLIP holds run; a missing CLIP's pooled part is zeros. CLIP windows
  that are empty for both CLIPs (CLIPTextEncodeSD3's empty_padding "none") leave the CLIPs out.
* Flux: the cond is T5's output, the pooled vector CLIP-L's pooler output.
Each encoder runs through `SDClipModel` (weights, embeddings, LoRA patches, clip skip), so there is one
encoding path for every family. Widths of missing encoders are ComfyUI's (768, 1280, 4096) unless the
loaded ones say otherwise (test-sized models).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

import torch

from engine.diffusion.clip_models import SDClipModel, SDXLClipG
from engine.diffusion.devices import manager
from engine.diffusion.tokens import FLOW_WIDTHS, ROLE_KEYS
from engine.models.text_encoders import Role

if TYPE_CHECKING:
    from engine.diffusion.clip import CLIP

# Conditioning is produced on the CPU in float32, as SD1/SDXL's is.
Output = tuple[Any, Any] | None


# ComfyUI's attribute (and state-dict prefix) for an encoder whose role Loom names otherwise: HiDream's
# text model holds Llama 3.1 as `llama` (its keys `llama.transformer.…`, CLIPSave's `_llama` file).
MODULE_NAMES = {"llama3_8b": "llama"}


def module_name(role: str) -> str:
    return MODULE_NAMES.get(role, role)


class _FlowClipModel(torch.nn.Module):
    """The encoders a flow CLIP holds, as `clip_l`, `clip_g`, `t5xxl`, … (absent ones are None), each under
    ComfyUI's name (`module_name`)."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.family = clip.family
        self.roles = clip.roles
        self._clip = [clip]  # a list, so torch does not see the CLIP
        for role in get_args(Role):  # every role's attribute exists (None when the CLIP lacks it)
            if role in clip.roles:
                index = clip.roles.index(role)
                part = (SDXLClipG if role == "clip_g" else SDClipModel)(clip, index)
                self.add_module(module_name(role), part)
            else:
                setattr(self, module_name(role), None)
        self.dtypes = {next(clip.encoders[0].parameters()).dtype}

    def _parts(self) -> list[SDClipModel]:
        return [part for role in self.roles if (part := self.part(role)) is not None]

    def part(self, role: str) -> SDClipModel | None:
        """The encoder of `role`, or None when this CLIP lacks it."""
        return getattr(self, module_name(role), None)

    def set_clip_options(self, options: dict[str, Any]) -> None:
        for part in self._parts():
            if not part.options.fixed_layer:
                part.set_clip_options(options)

    def reset_clip_options(self) -> None:
        for part in self._parts():
            part.reset_clip_options()

    def width(self, role: str) -> int:
        clip = self._clip[0]
        return clip.widths[clip.roles.index(role)] if role in clip.roles else FLOW_WIDTHS[role]

    def _run(self, role: str, tokens: dict[str, Any]) -> Output:
        part = self.part(role)
        if part is None:
            return None
        return part.encode_token_weights(tokens.get(ROLE_KEYS[role][0], []))

    def encode_token_weights(self, token_weight_pairs: dict[str, Any]) -> tuple[Any, Any]:
        try:
            return self._compose(token_weight_pairs)
        finally:  # T5-XXL alone is 9 GB in fp16: give the GPU back to the diffusion model
            manager().release(*self._clip[0].encoders)

    def _compose(self, tokens: dict[str, Any]) -> tuple[Any, Any]:
        raise NotImplementedError

    def load_sd(self, sd: dict[str, Any]) -> Any:
        return self.load_state_dict(sd, strict=False)


class SD3ClipModel(_FlowClipModel):
    """SD3/SD3.5: CLIP-L and CLIP-G side by side, padded to T5's width, then T5's sequence."""

    def _compose(self, tokens: dict[str, Any]) -> tuple[Any, Any]:
        l_width, g_width = self.width("clip_l"), self.width("clip_g")
        default_t5 = FLOW_WIDTHS["t5xxl"] if (l_width, g_width) == (768, 1280) else l_width + g_width
        t5_width = self.width("t5xxl") if "t5xxl" in self.roles else default_t5
        cond = pooled = None
        if tokens.get("l") or tokens.get("g"):
            l_out, g_out = self._run("clip_l", tokens), self._run("clip_g", tokens)
            lg = l_out[0] if l_out is not None else None
            if g_out is not None:
                if lg is not None:
                    cut = min(lg.shape[1], g_out[0].shape[1])
                    lg = torch.cat([lg[:, :cut], g_out[0][:, :cut]], dim=-1)
                else:
                    lg = torch.nn.functional.pad(g_out[0], (l_width, 0))
            if lg is not None:
                cond = torch.nn.functional.pad(lg, (0, t5_width - lg.shape[-1]))
            l_pooled = l_out[1] if l_out is not None else torch.zeros((1, l_width))
            g_pooled = g_out[1] if g_out is not None else torch.zeros((1, g_width))
            pooled = torch.cat([l_pooled, g_pooled], dim=-1)
        t5_out = self._run("t5xxl", tokens)
        if t5_out is not None:
            cond = t5_out[0] if cond is None else torch.cat([cond, t5_out[0]], dim=-2)
        if cond is None:
            cond = torch.zeros((1, 77, t5_width))
        if pooled is None:
            pooled = torch.zeros((1, l_width + g_width))
        return cond, pooled


class FluxClipModel(_FlowClipModel):
    """Flux.1: T5-XXL's sequence, CLIP-L's pooled vector."""

    def _compose(self, tokens: dict[str, Any]) -> tuple[Any, Any]:
        l_out, t5_out = self._run("clip_l", tokens), self._run("t5xxl", tokens)
        cond = t5_out[0] if t5_out is not None else torch.zeros((1, 256, self.width("t5xxl")))
        pooled = l_out[1] if l_out is not None else torch.zeros((1, self.width("clip_l")))
        return cond, pooled


class _SingleEncoderClipModel(_FlowClipModel):
    """One encoder's sequence is the conditioning; there is no pooled vector (ComfyUI returns None)."""

    role = ""

    def _compose(self, tokens: dict[str, Any]) -> tuple[Any, Any]:
        out = self._run(self.role, tokens)
        if out is None:
            raise ValueError(f"this {self.family} CLIP has no {self.role} text encoder")
        return self._trim(out[0], tokens), None

    def _trim(self, cond: Any, tokens: dict[str, Any]) -> Any:
        return cond


class ChromaClipModel(_SingleEncoderClipModel):
    """Chroma: T5-XXL alone, the prompt and `</s>` unpadded (ComfyUI's PixArt T5)."""

    role = "t5xxl"


class ZImageClipModel(_SingleEncoderClipModel):
    """Z-Image: Qwen3-4B's penultimate hidden states over the whole chat-templated prompt."""

    role = "qwen3_4b"


class QwenImageClipModel(_SingleEncoderClipModel):
    """Qwen-Image: Qwen2.5-VL's final hidden states from the user turn on: ComfyUI drops the system prompt
    up to the second `<|im_start|>` and the `user` and newline tokens after it."""

    role = "qwen25_7b"

    def _trim(self, cond: Any, tokens: dict[str, Any]) -> Any:
        window = tokens.get("qwen25_7b", [[]])[0]
        ids = [pair[0] if isinstance(pair[0], int) else None for pair in window]
        starts = [i for i, token in enumerate(ids) if token == IM_START_ID][:2]
        if not starts:
            return cond
        end = starts[-1]
        if cond.shape[1] > end + 3 and ids[end + 1 : end + 3] == [USER_ID, NEWLINE_ID]:
            end += 3
        return cond[:, end:]


class Flux2ClipModel(_SingleEncoderClipModel):
    """Flux.2: Klein's Qwen3 (4B or 8B) or dev's Mistral Small 3, three hidden layers side by side."""

    @property
    def role(self) -> str:  # type: ignore[override]
        return self.roles[0]


class QwenImage21ClipModel(_SingleEncoderClipModel):
    """Qwen-Image 2.1: Qwen3-VL's hidden states from the user turn on (ComfyUI drops the system turn, up to
    the second `<|im_start|>`, and keeps `user` and the newline), without the vision tokens when the
    tokens say `keep_vision` is off (engine.diffusion.qwen21_text)."""

    role = "qwen3vl_8b"

    def _trim(self, cond: Any, tokens: dict[str, Any]) -> Any:
        from engine.diffusion.qwen21_text import trim

        return trim(cond, tokens.get("qwen3vl_8b", [[]])[0], bool(tokens.get("keep_vision", True)))


class Flux3ClipModel(_SingleEncoderClipModel):
    """Flux 3: Qwen3-VL 4B's hidden states at eight layers side by side, over the whole padded prompt."""

    role = "qwen3vl_4b"


class Lumina2ClipModel(_SingleEncoderClipModel):
    """Lumina Image 2.0: Gemma 2 2B's penultimate hidden states over the whole prompt."""

    role = "gemma2_2b"


# Qwen's ids for `<|im_start|>`, "user" and "\n".
IM_START_ID, USER_ID, NEWLINE_ID = 151644, 872, 198
_FAMILY_MODELS: dict[str, type[_FlowClipModel]] = {
    "sd3": SD3ClipModel,
    "flux": FluxClipModel,
    "chroma": ChromaClipModel,
    "zimage": ZImageClipModel,
    "qwen_image": QwenImageClipModel,
    "flux2": Flux2ClipModel,
    "qwen_image21": QwenImage21ClipModel,
    "flux3": Flux3ClipModel,
    "lumina2": Lumina2ClipModel,
}


def flow_cond_stage_model(clip: CLIP) -> torch.nn.Module:
    if clip.family == "hidream":
        from engine.diffusion.clip_hidream import HiDreamClipModel

        return HiDreamClipModel(clip)
    return _FAMILY_MODELS[clip.family](clip)
