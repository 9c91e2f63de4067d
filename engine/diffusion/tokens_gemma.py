"""Gemma 2's tokenizer (Lumina Image 2.0's text encoder, key `gemma2_2b`), read from the text-encoder file.

ComfyUI's `gemma_2_2b_fp16.safetensors` (and the text encoder inside `lumina_2.safetensors`) carries its
sentencepiece model as a uint8 tensor `spiece_model` (`text_encoders.spiece_model` in a checkpoint), so no
vocabulary ships with Loom: the tokenizer is built from those bytes, as ComfyUI's SPieceTokenizer does.
As ComfyUI's Gemma2BTokenizer: weights are parsed, each weighted segment is encoded whole and the BOS
sentencepiece adds is replaced by one start token for the window, there is no end token, no padding and
no length limit (one window), and at least one token.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from engine.diffusion.tokens_llm import LLMTokenizer

PAD_ID = 0


class SentencePieceModel:
    """A sentencepiece processor over a serialized model, with the calls ComfyUI's SPieceTokenizer has."""

    def __init__(self, proto: bytes, add_bos: bool = True) -> None:
        import sentencepiece

        self.proto = proto
        self.processor = sentencepiece.SentencePieceProcessor(
            model_proto=proto, add_bos=add_bos, add_eos=False
        )

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": list(self.processor.encode(text))}

    def get_vocab(self) -> dict[str, int]:
        return {self.processor.id_to_piece(i): i for i in range(self.processor.get_piece_size())}

    def serialize_model(self) -> Any:
        import torch

        return torch.frombuffer(bytearray(self.proto), dtype=torch.uint8)


def proto_bytes(tensor: Any) -> bytes:
    """The serialized sentencepiece model from a file's `spiece_model` tensor."""
    return bytes(tensor.numpy().tobytes())


class GemmaTokenizer(LLMTokenizer):
    """`SDTokenizer` over the sentencepiece model a Gemma file carries (None: the file has none)."""

    def __init__(
        self, proto: bytes | None, embedding_directory: Any = None, embedding_size: int = 2304
    ) -> None:
        super().__init__("gemma2_2b", embedding_directory, embedding_size, PAD_ID)
        self.proto = proto
        self.tokens_start = 1
        self.start_token = self.tokenizer("")["input_ids"][0] if proto is not None else None

    @cached_property
    def _model(self) -> SentencePieceModel:
        if self.proto is None:
            raise ValueError(
                "this Gemma text encoder file carries no tokenizer (`spiece_model`): use ComfyUI's "
                "gemma_2_2b_fp16.safetensors or a lumina_2.safetensors checkpoint, which include it"
            )
        return SentencePieceModel(self.proto)

    @property
    def tokenizer(self) -> Any:
        return self._model

    def _ids(self, text: str) -> list[int]:
        return self._model(text)["input_ids"][self.tokens_start :]

    def state_dict(self) -> dict[str, Any]:
        return {} if self.proto is None else {"spiece_model": self._model.serialize_model()}
