"""The Qwen language models as text encoders (engine.models.llm_encoders loads them)."""

from __future__ import annotations

from typing import Any

import torch


class LazyHead:
    """A language model's output projection (`lm_head.weight`), read from its file only when text is
    generated (TextGenerate): encoding never needs it, and it is a tenth of an 8B model."""

    def __init__(self, state: Any, key: str) -> None:
        self.state, self.key = state, key
        self._weight: Any = None

    def weight(self) -> Any:
        if self._weight is None:
            self._weight = self.state[self.key]
        return self._weight


class LLMEncoder(torch.nn.Module):
    """A language model without its head, under ComfyUI's `model.` prefix, called like a text encoder.
    Qwen2.5-VL's may also hold its vision tower under `visual.` (ComfyUI's names), which turns an image
    into language-model tokens for Qwen-Image Edit."""

    def __init__(self, model: Any, visual: Any = None, final_norm: bool = True) -> None:
        super().__init__()
        self.model = model
        self.visual = visual
        # What the file carries for the tokenizer (ComfyUI's tokenizer_data: Mistral's tekken.json).
        self.tokenizer_data: dict[str, Any] = {}
        # Qwen-Image 2.1 reads the last layer's output before the final RMSNorm (transformers 4's
        # hidden_states[-1]; 5's is normalised): without it, the norm passes its input through.
        self.final_norm = final_norm
        self.head: LazyHead | None = None  # set by the loader when the file has an lm_head
        # Qwen3-VL: each encoded image's DeepStack features, and where the image tokens sit in each row
        # (set by engine.diffusion.llm_images), consumed by the next forward.
        self.deepstack: list[list[Any]] = []
        self.image_spans: list[list[tuple[int, int, int]]] = []

    @property
    def config(self) -> Any:
        return self.model.config

    def get_input_embeddings(self) -> Any:
        return self.model.get_input_embeddings()

    def encode_image(self, image: Any) -> tuple[Any, tuple[int, int, int]]:
        """(tokens [n, width], (1, rows, columns) of those tokens) for the first image of an IMAGE batch."""
        from engine.models import qwen_vision

        if self.visual is None:
            raise ValueError(
                "this text encoder has no vision tower (the file holds no `visual.` weights), so it cannot "
                "encode an image: use the complete qwen_2.5_vl_7b file"
            )
        config = self.visual.config
        deepstack = hasattr(self.visual, "deepstack_merger_list")  # Qwen3-VL: [-1, 1] pixels
        normalised = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)} if deepstack else {}
        pixels, grid = qwen_vision.patches(
            image, config.patch_size, config.temporal_patch_size, config.spatial_merge_size, **normalised
        )
        parameter = next(self.visual.parameters())
        grid_thw = torch.tensor([grid], device=parameter.device)
        with torch.no_grad():
            out = self.visual(pixels.to(parameter.device, parameter.dtype), grid_thw=grid_thw)
        merge = config.spatial_merge_size
        if deepstack:
            self.deepstack.append(list(out.deepstack_features))
        return out.pooler_output, (1, grid[1] // merge, grid[2] // merge)

    def forward(
        self,
        input_ids: Any,
        output_hidden_states: bool = True,
        position_ids: Any = None,
        attention_mask: Any = None,
        **kwargs: Any,
    ) -> Any:
        extra: dict[str, Any] = {} if position_ids is None else {"position_ids": position_ids}
        if attention_mask is not None:
            extra["attention_mask"] = attention_mask
        if self.deepstack:
            extra.update(self._deepstack_inputs(input_ids))
        handle = None
        if not self.final_norm:
            handle = self.model.norm.register_forward_hook(lambda _module, args, _output: args[0])
        try:
            return self.model(
                input_ids=input_ids, output_hidden_states=output_hidden_states, use_cache=False, **extra
            )
        finally:
            if handle is not None:
                handle.remove()

    def _deepstack_inputs(self, input_ids: Any) -> dict[str, Any]:
        """Qwen3-VL's DeepStack inputs for this call (then forgotten): where the image tokens are, and the
        features each of the first layers adds there, images in the order they were encoded."""
        mask = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
        for row, spans in enumerate(self.image_spans):
            for start, rows, cols in spans:
                mask[row, start : start + rows * cols] = True
        layers = [torch.cat([image[i] for image in self.deepstack]) for i in range(len(self.deepstack[0]))]
        self.deepstack, self.image_spans = [], []
        return {"visual_pos_masks": mask, "deepstack_visual_embeds": layers}
