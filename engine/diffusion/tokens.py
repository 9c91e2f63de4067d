"""Prompts → ComfyUI's token format: per text encoder, a list of 77-token windows of (token, weight).

A token is a CLIP id or, for a textual-inversion embedding, one of the embedding's vectors. Windows
hold a start token, up to 75 prompt tokens, an end token and padding. As in ComfyUI, each weighted
segment of the prompt is tokenized as a whole (embeddings split it); a segment of 8 tokens or more is
cut at the window boundary, a shorter one moves whole to the next window.

`SDTokenizer` takes ComfyUI's constructor arguments, so `comfy.sd1_clip` can name it for packs;
`ClipTokenizer` is what `CLIP.tokenizer` holds: one `SDTokenizer` per text encoder, keyed as ComfyUI
keys them (`l`, `g`, `h`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from engine.diffusion.embeddings import EmbeddingError, find_embedding, load_embedding
from engine.diffusion.prompt_weights import escape_important, token_weights, unescape_important
from engine.models.tokenizer import BOS_ID, CONTEXT_LENGTH, EOS_ID

log = logging.getLogger("loom.embeddings")
EMBEDDING_PREFIX = "embedding:"
# A group of at least this many tokens may be split across windows instead of moving whole.
MAX_WORD_LENGTH = 8

Directories = Sequence[str] | None


class SDTokenizer:
    """One text encoder's tokenizer: CLIP's BPE, its padding, and where its embeddings live.

    `embedding_directory` is a folder, a list of folders, None (no embeddings: `embedding:x` stays
    text), or a callable returning folders (Loom's loaders pass the configured models/embeddings).
    """

    def __init__(
        self,
        tokenizer_path: str | None = None,
        max_length: int = CONTEXT_LENGTH,
        pad_with_end: bool = True,
        embedding_directory: str | Directories | Callable[[], Directories] = None,
        embedding_size: int = 768,
        embedding_key: str = "clip_l",
        pad_to_max_length: bool = True,
        min_length: int | None = None,
        pad_token: int | None = None,
        **_: Any,
    ) -> None:
        self.tokenizer_path = tokenizer_path
        self.max_length = max_length
        self.min_length = min_length
        self.start_token: int | None = BOS_ID
        self.end_token: int | None = EOS_ID
        self.tokens_start = 1
        self.pad_with_end = pad_with_end
        self.pad_token = pad_token if pad_token is not None else (EOS_ID if pad_with_end else 0)
        self.pad_to_max_length = pad_to_max_length
        self.embedding_directory = embedding_directory
        self.embedding_size = embedding_size
        self.embedding_key = embedding_key
        self.embedding_identifier = EMBEDDING_PREFIX
        self.max_word_length = MAX_WORD_LENGTH

    @property
    def tokenizer(self) -> Any:
        """The transformers `CLIPTokenizer` (what ComfyUI's `SDTokenizer.tokenizer` is)."""
        if self.tokenizer_path is not None:
            from transformers import CLIPTokenizer

            return CLIPTokenizer.from_pretrained(self.tokenizer_path)
        from engine.models.tokenizer import get_clip_tokenizer

        return get_clip_tokenizer()

    @property
    def inv_vocab(self) -> dict[int, str]:
        return {index: token for token, index in self.tokenizer.get_vocab().items()}

    def embedding_directories(self) -> list[str]:
        found = self.embedding_directory
        if callable(found):
            found = found()
        if found is None:
            return []
        return [found] if isinstance(found, str) else [str(d) for d in found]

    def _ids(self, text: str) -> list[int]:
        if self.tokenizer_path is None:
            from engine.models.tokenizer import encode

            return encode(text)
        ids = self.tokenizer(text)["input_ids"]
        return list(ids[self.tokens_start : -1])

    def tokenize_with_weights(
        self, text: str, return_word_ids: bool = False, tokenizer_options: dict | None = None, **kwargs: Any
    ) -> list[list[tuple[Any, ...]]]:
        """Windows of (token, weight) pairs, or (token, weight, word id) triples with `return_word_ids`."""
        options = tokenizer_options or {}
        min_length = options.get(f"{self.embedding_key}_min_length", self.min_length)
        min_padding = options.get(f"{self.embedding_key}_min_padding")
        text = escape_important(text)
        segments = [(text, 1.0)] if kwargs.get("disable_weights") else token_weights(text, 1.0)
        groups: list[list[tuple[Any, float]]] = []
        for segment, weight in segments:
            groups.extend(self._segment_groups(unescape_important(segment), weight))
        windows = self._windows(groups, min_length, min_padding)
        if return_word_ids:
            return windows
        return [[(token, weight) for token, weight, _ in window] for window in windows]

    def _segment_groups(self, segment: str, weight: float) -> list[list[tuple[Any, float]]]:
        directories = self.embedding_directories() if self.embedding_directory is not None else None
        pieces = re.split(f" {EMBEDDING_PREFIX}|\n{EMBEDDING_PREFIX}", segment)
        words = [pieces[0], *(EMBEDDING_PREFIX + piece for piece in pieces[1:])]
        groups: list[list[tuple[Any, float]]] = []
        for word in (w for w in words if w):
            if word.startswith(EMBEDDING_PREFIX) and directories is not None:
                name = word[len(EMBEDDING_PREFIX) :].strip("\n")
                vectors, word, set_weight = self._embedding(name, directories)
                if vectors is None:
                    missing = (name.split() or [""])[0]
                    log.warning(
                        "warning, embedding:%s does not exist in %s, ignoring",
                        missing,
                        " or ".join(directories) or "(no embeddings folder)",
                    )
                else:
                    rows = vectors.reshape(1, -1) if vectors.ndim == 1 else vectors
                    groups.append([(row, weight if set_weight is None else set_weight) for row in rows])
                if not word:
                    continue
            groups.append([(token, weight) for token in self._ids(word)])
        return groups

    def _embedding(self, name: str, directories: list[str]) -> tuple[Any, str, float | None]:
        """The vectors of the embedding `name` starts with, the text after its name, and the weight
        `embedding:name:1.2` sets (Loom's addition: ComfyUI looks for a file named "name:1.2")."""
        first, *rest = name.split() or [""]
        leftover = " ".join(rest)
        vectors = self._load(first, directories)
        if vectors is not None:
            return vectors, leftover, None
        stripped = first.strip(",")
        if len(stripped) < len(first):
            vectors = self._load(stripped, directories)
            if vectors is not None:
                return vectors, f"{first[len(stripped) :]} {leftover}", None
        base, _, suffix = stripped.rpartition(":")
        try:
            weight = float(suffix)
        except ValueError:
            return None, f"{first[len(stripped) :]} {leftover}".strip(), None
        return self._load(base, directories), f"{first[len(stripped) :]} {leftover}".strip(), weight

    def _load(self, name: str, directories: list[str]) -> Any:
        path = find_embedding(name, directories) if name else None
        if path is None:
            return None
        try:
            return load_embedding(path, self.embedding_size, self.embedding_key)
        except (EmbeddingError, OSError, RuntimeError) as exc:
            log.warning("error loading embedding %s, skipping it: %s", name, exc)
            return None

    def _windows(
        self, groups: list[list[tuple[Any, float]]], min_length: int | None, min_padding: int | None
    ) -> list[list[tuple[Any, float, int]]]:
        start = [(self.start_token, 1.0, 0)] if self.start_token is not None else []
        has_end = 1 if self.end_token is not None else 0
        window: list[tuple[Any, float, int]] = list(start)
        windows = [window]
        for word_id, group in enumerate(groups, start=1):
            is_large = len(group) >= self.max_word_length
            while group:
                if len(group) + len(window) > self.max_length - has_end:
                    room = self.max_length - len(window) - has_end
                    if is_large:
                        window.extend((t, w, word_id) for t, w in group[:room])
                        group = group[room:]
                        if has_end:
                            window.append((self.end_token, 1.0, 0))
                    else:
                        if has_end:
                            window.append((self.end_token, 1.0, 0))
                        if self.pad_to_max_length:
                            window.extend([(self.pad_token, 1.0, 0)] * room)
                    window = list(start)
                    windows.append(window)
                else:
                    window.extend((t, w, word_id) for t, w in group)
                    group = []
        if has_end:
            window.append((self.end_token, 1.0, 0))
        if min_padding is not None:
            window.extend([(self.pad_token, 1.0, 0)] * min_padding)
        if self.pad_to_max_length and len(window) < self.max_length:
            window.extend([(self.pad_token, 1.0, 0)] * (self.max_length - len(window)))
        if min_length is not None and len(window) < min_length:
            window.extend([(self.pad_token, 1.0, 0)] * (min_length - len(window)))
        return windows

    def untokenize(self, pairs: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], str]]:
        vocab = self.inv_vocab
        return [
            (pair, vocab.get(pair[0], "<embedding>") if isinstance(pair[0], int) else "") for pair in pairs
        ]

    def state_dict(self) -> dict[str, Any]:
        return {}


# ComfyUI's key, embedding key and padding for each text encoder of a family, in Loom's encoder order.
ENCODER_KEYS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "sd1": (("l", "clip_l", True),),
    "sd2": (("h", "clip_h", False),),
    "sdxl": (("l", "clip_l", True), ("g", "clip_g", False)),
    "sdxl_refiner": (("g", "clip_g", False),),
}
# The flow families' encoders by role: ComfyUI's token key, embedding key, padding with the end token.
ROLE_KEYS: dict[str, tuple[str, str, bool]] = {
    "clip_l": ("l", "clip_l", True),
    "clip_g": ("g", "clip_g", False),
    "t5xxl": ("t5xxl", "t5xxl", False),
    "qwen3_4b": ("qwen3_4b", "qwen3_4b", False),
    "qwen25_7b": ("qwen25_7b", "qwen25_7b", False),
    "qwen3_8b": ("qwen3_8b", "qwen3_8b", False),
    "mistral3_24b": ("mistral3_24b", "mistral3_24b", False),
    "qwen3vl_8b": ("qwen3vl_8b", "qwen3vl_8b", False),
    "qwen3vl_4b": ("qwen3vl_4b", "qwen3vl_4b", False),
    "gemma2_2b": ("gemma2_2b", "gemma2_2b", False),
    "llama3_8b": ("llama", "llama", False),
}
# ComfyUI's flow tokenizers make windows for every encoder of the family, loaded or not, in this order.
FLOW_ROLES: dict[str, tuple[str, ...]] = {
    "sd3": ("clip_g", "clip_l", "t5xxl"),
    "flux": ("clip_l", "t5xxl"),
    "chroma": ("t5xxl",),
    "zimage": ("qwen3_4b",),
    "qwen_image": ("qwen25_7b",),
    "qwen_image21": ("qwen3vl_8b",),
    "flux3": ("qwen3vl_4b",),
    "lumina2": ("gemma2_2b",),
    "hidream": ("clip_g", "clip_l", "t5xxl", "llama3_8b"),
}
# Widths of the encoders a flow CLIP lacks (only embeddings read them).
FLOW_WIDTHS = {
    "clip_l": 768,
    "clip_g": 1280,
    "t5xxl": 4096,
    "qwen3_4b": 2560,
    "qwen25_7b": 3584,
    "qwen3_8b": 4096,
    "mistral3_24b": 5120,
    "qwen3vl_8b": 4096,
    "qwen3vl_4b": 2560,
    "gemma2_2b": 2304,
    "llama3_8b": 4096,
}


def encoder_keys(family: str, roles: Sequence[str] = ()) -> tuple[tuple[str, str, bool], ...]:
    """(token key, embedding key, pad with end) of each encoder of a CLIP, in its encoder order."""
    if roles:
        return tuple(ROLE_KEYS[role] for role in roles)
    return ENCODER_KEYS[family]


# ComfyUI tokenizes SDXL prompts for CLIP-G first; the dict order is part of what packs see.
_TOKENIZE_ORDER = {"sdxl": ("g", "l"), "sd3": ("g", "l", "t5xxl")}


class ClipTokenizer:
    """A family's tokenizers, one per text encoder: `tokenize_with_weights` returns {key: windows}.
    For SD3 and Flux (`roles` given) one per encoder of the family, as ComfyUI's SD3/Flux tokenizers."""

    def __init__(
        self,
        family: str,
        widths: Sequence[int],
        embedding_directory: Any = None,
        roles: Sequence[str] = (),
        tokenizer_data: dict[str, Any] | None = None,
    ) -> None:
        self.family = family
        self.tokenizers: dict[str, SDTokenizer] = {}
        if roles and family in FLOW_ROLES:  # Flux.2's CLIP tokenizes for its one encoder only
            known = dict(zip(roles, widths, strict=True))
            roles = FLOW_ROLES[family]
            widths = [known.get(role, FLOW_WIDTHS[role]) for role in roles]
        for (key, embedding_key, pad_with_end), width in zip(
            encoder_keys(family, roles), widths, strict=True
        ):
            if family == "hidream":
                from engine.diffusion.tokens_hidream import hidream_tokenizer

                self.tokenizers[key] = hidream_tokenizer(key, embedding_directory, width, tokenizer_data)
            elif family == "flux2":
                from engine.diffusion.tokens_flux2 import flux2_tokenizer

                self.tokenizers[key] = flux2_tokenizer(key, embedding_directory, width, tokenizer_data)
            elif family == "flux3":
                from engine.diffusion.tokens_flux3 import Flux3Tokenizer

                self.tokenizers[key] = Flux3Tokenizer(embedding_directory, width)
            elif key == "t5xxl":
                from engine.diffusion.tokens_t5 import T5Tokenizer

                self.tokenizers[key] = T5Tokenizer(family, embedding_directory, width)
            elif key == "gemma2_2b":
                from engine.diffusion.tokens_gemma import GemmaTokenizer

                proto = (tokenizer_data or {}).get("spiece_model")
                self.tokenizers[key] = GemmaTokenizer(proto, embedding_directory, width)
            elif key.startswith("qwen"):
                from engine.diffusion.tokens_llm import QwenTokenizer

                self.tokenizers[key] = QwenTokenizer(key, embedding_directory, width)
            else:
                self.tokenizers[key] = SDTokenizer(
                    pad_with_end=pad_with_end,
                    embedding_directory=embedding_directory,
                    embedding_size=width,
                    embedding_key=embedding_key,
                )
            setattr(self, embedding_key, self.tokenizers[key])
        self.clip_name = next(iter(self.tokenizers))
        self.clip = f"clip_{self.clip_name}"

    def tokenize_with_weights(
        self, text: str, return_word_ids: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        order = _TOKENIZE_ORDER.get(self.family, tuple(self.tokenizers))
        return {
            key: self.tokenizers[key].tokenize_with_weights(text, return_word_ids, **kwargs) for key in order
        }

    def untokenize(self, pairs: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], str]]:
        return next(iter(self.tokenizers.values())).untokenize(pairs)

    def state_dict(self) -> dict[str, Any]:
        return {}
