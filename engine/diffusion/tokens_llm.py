"""Qwen text encoders' tokenizers in ComfyUI's token format (Z-Image's `qwen3_4b`, Qwen-Image's `qwen25_7b`).

The prompt is put into the family's chat template and tokenized whole: no weights (ComfyUI passes
`disable_weights`), no start or end token, no padding and no length limit, so one window. For Qwen-Image a
prompt that already starts with `<|im_start|>` (or `<|start_header_id|>`) is taken as a complete template;
Z-Image always wraps, as ComfyUI's ZImageTokenizer does.

Qwen-Image takes images too (`tokenize(prompt, images=[IMAGE, …])`, TextEncodeQwenImageEdit): without a
template of the caller's, the edit template with one vision slot is used, and each `<|image_pad|>` in
turn is replaced by ComfyUI's image entry `{"type": "image", "data": IMAGE, "original_type": "image"}`,
which the text encoder expands into the vision tower's tokens (engine.diffusion.llm_images).
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.tokens import SDTokenizer
from engine.models.tokenizer import qwen

# ComfyUI's templates: Z-Image's is Qwen3's chat turn; Qwen-Image's adds its describing system prompt.
TEMPLATES = {
    "qwen3_4b": "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
    "qwen25_7b": (
        "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
        "text, spatial relationships of the objects and background:<|im_end|>\n"
        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
    ),
    # Qwen-Image 2.1 (ComfyUI's QwenImage21Tokenizer; thinking on: no empty think block).
    "qwen3vl_8b": (
        "<|im_start|>system\nComprehend and analyze the provided prompt.<|im_end|>\n"
        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
    ),
}
# Qwen-Image's template when images are given: the edit system prompt and one vision slot.
QWEN_IMAGE_EDIT_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, "
    "objects, background), then explain how the user's text instruction should alter or modify the image. "
    "Generate a new image that meets the user's requirements while maintaining consistency with the "
    "original input where appropriate.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n"
)
IMAGE_PAD_ID = 151655
VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"
LLM_MAX_LENGTH = 99999999


class LLMTokenizer(SDTokenizer):
    """`SDTokenizer` set up as ComfyUI sets it up for language-model text encoders (`key`): no length
    limit (one window), no end token, no padding to a length, at least `min_length` tokens."""

    def __init__(
        self,
        key: str,
        embedding_directory: Any,
        embedding_size: int,
        pad_token: int,
        start_token: int | None = None,
        min_length: int = 1,
    ) -> None:
        super().__init__(
            max_length=LLM_MAX_LENGTH,
            pad_with_end=False,
            embedding_directory=embedding_directory,
            embedding_size=embedding_size,
            embedding_key=key,
            pad_to_max_length=False,
            min_length=min_length,
            pad_token=pad_token,
        )
        self.start_token = start_token
        self.end_token = None
        self.tokens_start = 0


class QwenTokenizer(LLMTokenizer):
    """`SDTokenizer` over Qwen's vocabulary, with the chat template of `key` (qwen3_4b or qwen25_7b)."""

    def __init__(self, key: str, embedding_directory: Any = None, embedding_size: int = 2560) -> None:
        super().__init__(key, embedding_directory, embedding_size, qwen.PAD_ID)
        self.template = TEMPLATES[key]

    @property
    def tokenizer(self) -> Any:
        return qwen.tokenizer()

    def _ids(self, text: str) -> list[int]:
        return qwen.encode(text)

    def tokenize_with_weights(
        self,
        text: str,
        return_word_ids: bool = False,
        tokenizer_options: dict | None = None,
        llama_template: str | None = None,
        images: list[Any] | None = None,
        **kwargs: Any,
    ) -> list[list[tuple[Any, ...]]]:
        key = self.embedding_key
        images = list(images or []) if key in ("qwen25_7b", "qwen3vl_8b") else []
        if key == "qwen3vl_8b" and kwargs.pop("prevent_empty_text", False) and text == "":
            text = " "
        templated = key in ("qwen25_7b", "qwen3vl_8b") and text.startswith(
            ("<|im_start|>", "<|start_header_id|>")
        )
        if not templated:
            text = (llama_template or self._template(len(images))).format(text)
        kwargs["disable_weights"] = True
        windows = super().tokenize_with_weights(text, return_word_ids, tokenizer_options, **kwargs)
        return _with_images(windows, images)

    def _template(self, images: int) -> str:
        """The family's template; with images Qwen-Image Edit's, or for Qwen-Image 2.1 one numbered vision
        slot per image before the prompt (`<image1><|vision_start|>…`, ComfyUI's QwenImage21Tokenizer)."""
        if not images:
            return self.template
        if self.embedding_key == "qwen25_7b":
            return QWEN_IMAGE_EDIT_TEMPLATE
        slots = " ".join(f"<image{i + 1}>{VISION_BLOCK}" for i in range(images))
        return self.template.replace("{}", slots + "{}", 1)


def _with_images(windows: list[list[tuple[Any, ...]]], images: list[Any]) -> list[list[tuple[Any, ...]]]:
    """Each `<|image_pad|>` in turn replaced by the next image's entry (extra pads stay text)."""
    pending = iter(images)
    out = []
    for window in windows:
        row = []
        for pair in window:
            is_pad = isinstance(pair[0], int) and pair[0] == IMAGE_PAD_ID
            image = next(pending, None) if is_pad else None
            entry = {"type": "image", "data": image, "original_type": "image"}
            row.append(pair if image is None else (entry, *pair[1:]))
        out.append(row)
    return out
