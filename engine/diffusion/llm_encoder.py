"""The Qwen language models as text encoders (engine.models.llm_encoders loads them)."""

from __future__ import annotations

from typing import Any

import torch


class LLMEncoder(torch.nn.Module):
    """A language model without its head, under ComfyUI's `model.` prefix, called like a text encoder."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    def get_input_embeddings(self) -> Any:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: Any, output_hidden_states: bool = True, **kwargs: Any) -> Any:
        return self.model(input_ids=input_ids, output_hidden_states=output_hidden_states, use_cache=False)
