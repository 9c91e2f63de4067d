"""CLIP: what travels on CLIP links — a checkpoint's text encoders, answering ComfyUI's `comfy.sd.CLIP` calls.

Loom's encoders are transformers `CLIPTextModel`s (SDXL's second one `CLIPTextModelWithProjection`), shared
by every CLIP made from one checkpoint. A CLIP adds what nodes change: the layer to read (`clip_layer`,
CLIPSetLastLayer), weight patches (LoRA, merges: ComfyUI's format, applied by engine.diffusion.weights as
MODEL's are) only while it encodes, tokenizer options and where its embeddings live. `clone()` copies
those, never the encoders, so a pack's `clip.clone()` followed by `clip_layer(-2)` leaves the loader's
cached CLIP as it was. CLIPTextEncode is `tokenize` + `encode_from_tokens`, so a pack that makes the same
calls gets the same conditioning. SD3's and Flux's CLIPs (CLIP-L, CLIP-G, T5-XXL: any subset, named by
`roles`) answer the same calls with ComfyUI's token keys "l", "g", "t5xxl".
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from engine.diffusion.devices import manager
from engine.diffusion.tokens import ClipTokenizer


def loom_embedding_folders() -> list[str]:
    """The configured models/embeddings folders (read when a prompt is tokenized)."""
    from engine import folders

    return [str(path) for path in folders.current().models.get("embeddings", [])]


@dataclass(eq=False)
class CLIP:
    """CLIP: text encoders, their padding, the layer to read, weight patches and tokenizer settings."""

    encoders: tuple[Any, ...]
    pad_ids: tuple[int, ...]
    family: str
    # Which hidden layer conditions the UNet (CLIPSetLastLayer / clip_layer); None is the family's default.
    layer: int | None = None
    # Weight patches in ComfyUI's format keyed by its state-dict names (`clip_l.transformer.text_model.…`):
    # LoRA pairs, diffs, another CLIP's weights (CLIPMerge*). Applied only while encoding; replaced, never
    # changed in place, so clones may share it.
    patches: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # Folders searched for `embedding:name`; a callable is read at tokenize time, None disables embeddings.
    embedding_directory: Any = loom_embedding_folders
    tokenizer_options: dict[str, Any] = field(default_factory=dict)
    # Flow families (SD3, Flux): what each encoder is (clip_l, clip_g, t5xxl) and its width; empty for
    # SD1/SD2/SDXL, whose encoders are known by position.
    roles: tuple[str, ...] = ()
    widths: tuple[int, ...] = ()
    # CLIPLoader's device input: "cpu" runs these encoders on the CPU whatever the compute device.
    device: str | None = None

    # ComfyUI's CLIP API -------------------------------------------------------------------------------

    @property
    def layer_idx(self) -> int | None:
        return self.layer

    @layer_idx.setter
    def layer_idx(self, value: int | None) -> None:
        self.layer = value

    @property
    def tokenizer(self) -> ClipTokenizer:
        """This CLIP's tokenizers (kept, so a pack's changes to them last; rebuilt when the
        embedding folders are replaced)."""
        cached = self.__dict__.get("_tokenizer")
        if cached is None or cached[0] is not self.embedding_directory:
            widths = [e.get_input_embeddings().weight.shape[-1] for e in self.encoders]
            # Data a text-encoder file carries for its tokenizer (Mistral's tekken vocabulary).
            data = {k: v for e in self.encoders for k, v in getattr(e, "tokenizer_data", {}).items()}
            tokenizer = ClipTokenizer(self.family, widths, self.embedding_directory, self.roles, data)
            cached = (self.embedding_directory, tokenizer)
            self.__dict__["_tokenizer"] = cached
        return cached[1]

    @property
    def cond_stage_model(self) -> Any:
        """The encoders as ComfyUI's text-encoder classes (`SDXLClipModel`, …) under its module names
        (`clip_l.transformer.text_model.…`), sharing the weights; one per CLIP, kept."""
        from engine.diffusion.clip_models import cond_stage_model

        if "_cond_stage_model" not in self.__dict__:
            self.__dict__["_cond_stage_model"] = cond_stage_model(self)
        return self.__dict__["_cond_stage_model"]

    @property
    def patcher(self) -> Any:
        from engine.diffusion.clip_modules import ClipPatcher

        return ClipPatcher(self)

    def clone(self) -> CLIP:
        return replace(self, tokenizer_options=dict(self.tokenizer_options))

    def clip_layer(self, layer_idx: int | None) -> None:
        self.layer = layer_idx

    def set_tokenizer_option(self, option_name: str, value: Any) -> None:
        self.tokenizer_options[option_name] = value

    def tokenize(self, text: str, return_word_ids: bool = False, **kwargs: Any) -> dict[str, Any]:
        """{encoder key: windows of (token, weight)}, e.g. {"l": [[(49406, 1.0), …]]} for SD1.x."""
        options = {**self.tokenizer_options, **kwargs.get("tokenizer_options", {})}
        if options:
            kwargs["tokenizer_options"] = options
        return self.tokenizer.tokenize_with_weights(text, return_word_ids, **kwargs)

    def encode_from_tokens(
        self, tokens: dict[str, Any], return_pooled: Any = False, return_dict: bool = False
    ) -> Any:
        """cond [1, tokens, width]; with `return_pooled` (cond, pooled); with `return_dict`
        {"cond", "pooled_output"}. `return_pooled="unprojected"` pools without CLIP-G's projection.
        SD3's tokens are {"g", "l", "t5xxl"}, Flux's {"l", "t5xxl"} (engine.diffusion.clip_models_flow)."""
        cond, pooled, *rest = self._encode(tokens, unprojected=return_pooled == "unprojected")
        if return_dict:  # a family's extra conditioning (HiDream's Llama states) travels in the dict
            return {"cond": cond, "pooled_output": pooled, **(rest[0] if rest else {})}
        return (cond, pooled) if return_pooled else cond

    def encode_from_tokens_scheduled(
        self,
        tokens: dict[str, Any],
        unprojected: bool = False,
        add_dict: dict | None = None,
        show_pbar: bool = True,
    ) -> list[list[Any]]:
        """CONDITIONING for the tokens: [[cond, {"pooled_output": …, **add_dict}]] (no hook keyframes)."""
        out = self.encode_from_tokens(
            tokens, return_pooled="unprojected" if unprojected else True, return_dict=True
        )
        cond = out.pop("cond")
        out.update(add_dict or {})
        return [[cond, out]]

    def encode(self, text: str) -> Any:
        return self.encode_from_tokens(self.tokenize(text))

    def load_sd(self, sd: dict[str, Any], full_model: bool = False) -> Any:
        """Load weights into the shared encoders: ComfyUI's whole-model keys with `full_model`, otherwise
        one encoder's transformers keys (`text_model.…`), into the encoder whose width they fit."""
        from engine.diffusion.clip_modules import load_encoder_state

        if full_model:
            return self.cond_stage_model.load_state_dict(sd, strict=False)
        return load_encoder_state(self.family, self.encoders, sd)

    def get_sd(self) -> dict[str, Any]:
        return self.cond_stage_model.state_dict()

    def add_patches(
        self, patches: dict[Any, Any], strength_patch: float = 1.0, strength_model: float = 1.0
    ) -> list:
        """Add weight patches keyed by ComfyUI's state-dict keys (or `(key, offset[, function])`), as
        ComfyUI's ModelPatcher.add_patches; returns the keys that name a weight of these encoders."""
        from engine.diffusion.clip_modules import with_patches

        self.patches, matched = with_patches(self, patches, strength_patch, strength_model)
        return matched

    def get_key_patches(self) -> dict[str, list[Any]]:
        """Every weight under its ComfyUI key: `[(weight, convert), *patches]` (what CLIPMerge* adds)."""
        from engine.diffusion.clip_modules import key_patches

        return key_patches(self)

    @contextmanager
    def weights_patched(self, index: int | None = None) -> Iterator[None]:
        """This CLIP's patches applied to the shared encoders (only encoder `index`, if given) for the
        duration of the block."""
        from engine.diffusion.clip_modules import patched_encoders

        with patched_encoders(self, index):
            yield

    def load_model(self) -> Any:
        if self.device != "cpu":
            manager().use(*self.encoders)
        return self.patcher

    # Loom's encoding ---------------------------------------------------------------------------------

    def _encode(self, tokens: dict[str, Any], unprojected: bool) -> tuple[Any, ...]:
        """Through `cond_stage_model`, as ComfyUI: its options reset, then this CLIP's layer."""
        model = self.cond_stage_model
        model.reset_clip_options()
        if self.layer is not None:
            model.set_clip_options({"layer": self.layer})
        if unprojected:
            model.set_clip_options({"projected_pooled": False})
        return model.encode_token_weights(tokens)

    def __deepcopy__(self, memo: dict[int, Any]) -> CLIP:
        return replace(self, tokenizer_options=copy.deepcopy(self.tokenizer_options, memo))
