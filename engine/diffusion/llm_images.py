"""Images inside a Qwen2.5-VL prompt (Qwen-Image Edit): ComfyUI's image entries in the token windows
(`{"type": "image", "data": IMAGE, …}` where `<|image_pad|>` was, engine.diffusion.tokens_llm) become
the vision tower's tokens, spliced in as embedding vectors are, with Qwen2-VL's multimodal positions
for the whole window (engine.models.qwen_vision.mrope_positions)."""

from __future__ import annotations

from typing import Any

Windows = list[list[tuple[Any, ...]]]


def has_images(windows: Windows) -> bool:
    return any(isinstance(pair[0], dict) for window in windows for pair in window)


def expand(encoder: Any, windows: Windows) -> tuple[Windows, Any]:
    """(windows with each image entry replaced by its token vectors, positions [3, windows, length])."""
    import torch

    from engine.models.qwen_vision import mrope_positions

    encode_image = getattr(encoder, "encode_image", None)
    rows: Windows = []
    positions = []
    spans_per_row = []
    for window in windows:
        row: list[tuple[Any, ...]] = []
        spans = []
        for pair in window:
            entry = pair[0]
            if not isinstance(entry, dict):
                row.append(pair)
                continue
            if entry.get("type") != "image" or encode_image is None:
                raise ValueError(
                    f"this text encoder cannot take a {entry.get('type')!r} entry in its prompt "
                    "(only Qwen2.5-VL takes images)"
                )
            vectors, (_, height, width) = encode_image(entry["data"])
            spans.append((len(row), height, width))
            row.extend((vector, *pair[1:]) for vector in vectors)
        rows.append(row)
        spans_per_row.append(spans)
        positions.append(mrope_positions(len(row), spans))
    if hasattr(encoder, "image_spans"):  # Qwen3-VL adds DeepStack features at these tokens
        encoder.image_spans = spans_per_row
    if len({len(row) for row in rows}) > 1:
        raise ValueError("windows with images must be equally long to be encoded together")
    return rows, torch.stack(positions, dim=1)


def with_plain_rows(positions: Any, rows: int) -> Any:
    """`positions` [3, n, length] extended by `rows` rows of plain text positions."""
    import torch

    length = positions.shape[-1]
    plain = torch.arange(length).view(1, 1, length).expand(3, rows, length)
    return torch.cat([positions, plain], dim=1)
