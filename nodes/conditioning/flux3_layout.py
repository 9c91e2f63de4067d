"""Flux 3's layout prompting (newer ComfyUI's CreateBoundingBoxes and Flux3LayoutPrompt).

Flux 3 takes boxes as text: the caption cites each element as `<id>` and ends with a JSON table of the
elements, `[{"id": "obj_1", "bbox": [y_min, x_min, y_max, x_max], "desc": "dress"}]`, the box on a
0–1000 grid over the canvas (Black Forest Labs' documented layout format). CreateBoundingBoxes turns the
boxes drawn in its editor (pixels on a width × height canvas, each with a type and a description) into
those elements, numbered per type (`obj_1`, `obj_2`, `text_1`, …), and draws them over the background;
Flux3LayoutPrompt writes the prompt.
"""

from __future__ import annotations

import json
from typing import Any

from engine.ui_workflow.widgets import FRONTEND_WIDGET

GRID = 1000
SIZE = {"default": 1024, "min": 16, "max": 16384, "step": 8}
OUTLINE = (1.0, 0.25, 0.1)


def _box_list(value: Any, node: str, name: str) -> list[dict[str, Any]]:
    """A list of box dicts from a widget value, a JSON string or an upstream BOUNDING_BOX list."""
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"{node}: input '{name}' is not valid JSON: {exc}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(box, dict) for box in value):
        raise ValueError(f"{node}: input '{name}' must be a list of boxes ({{x, y, width, height}})")
    for box in value:
        missing = [key for key in ("x", "y", "width", "height") if key not in box and "bbox" not in box]
        if missing:
            raise ValueError(f"{node}: a box of input '{name}' has no {', '.join(missing)}")
    return value


def _grid(value: float, side: int) -> int:
    return max(0, min(GRID, round(value / side * GRID)))


def element_of(box: dict[str, Any], box_id: str, width: int, height: int) -> dict[str, Any]:
    """One layout element: id, bbox on the 0–1000 grid ([y_min, x_min, y_max, x_max]), description;
    rendered text and a palette when the box has them."""
    meta = box.get("metadata") or {}
    if "bbox" in box:  # already an element (an ARRAY passed on)
        return {**box, "id": box.get("id", box_id)}
    x, y, w, h = (float(box[key]) for key in ("x", "y", "width", "height"))
    element: dict[str, Any] = {
        "id": box_id,
        "bbox": [_grid(y, height), _grid(x, width), _grid(y + h, height), _grid(x + w, width)],
        "desc": str(meta.get("desc") or box.get("desc") or ""),
    }
    if meta.get("text"):
        element["text"] = str(meta["text"])
    if meta.get("palette"):
        element["palette"] = list(meta["palette"])
    return element


def elements_of(boxes: list[dict[str, Any]], width: int, height: int) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    elements = []
    for box in boxes:
        kind = str((box.get("metadata") or {}).get("type") or "obj")
        counts[kind] = counts.get(kind, 0) + 1
        elements.append(element_of(box, f"{kind}_{counts[kind]}", width, height))
    return elements


def _preview(background: Any, elements: list[dict[str, Any]], width: int, height: int) -> Any:
    """The background (or a dark canvas) with each element's box outlined."""
    import torch

    if background is None:
        canvas = torch.full((1, height, width, 3), 0.1)
    else:
        canvas = background[:1, ..., :3].clone().float()
    rows, cols = canvas.shape[1], canvas.shape[2]
    line = max(1, min(rows, cols) // 256)
    colour = torch.tensor(OUTLINE)
    for element in elements:
        y0, x0, y1, x1 = element["bbox"]
        top, bottom = round(y0 * rows / GRID), max(round(y1 * rows / GRID), round(y0 * rows / GRID) + 1)
        left, right = round(x0 * cols / GRID), max(round(x1 * cols / GRID), round(x0 * cols / GRID) + 1)
        canvas[:, top : min(top + line, bottom), left:right] = colour
        canvas[:, max(bottom - line, top) : bottom, left:right] = colour
        canvas[:, top:bottom, left : min(left + line, right)] = colour
        canvas[:, top:bottom, max(right - line, left) : right] = colour
    return canvas


class CreateBoundingBoxes:
    DESCRIPTION = (
        "Boxes on a canvas for Flux 3's layout prompts: each box (pixels on the width × height canvas, "
        "with a type and a description) becomes an element with an id like obj_1 and a 0–1000 grid box."
    )
    RETURN_TYPES = ("IMAGE", "BOUNDING_BOX", "ARRAY")
    RETURN_NAMES = ("preview", "bboxes", "elements")
    FUNCTION = "create"
    CATEGORY = "conditioning/flux3"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "width": ("INT", dict(SIZE)),
                "height": ("INT", dict(SIZE)),
                "boxes": ("BOUNDING_BOX_EDITOR", {"default": [], FRONTEND_WIDGET: True}),
                # The editor's second list (empty in every template seen); Loom does not read it.
                "relations": ("BOUNDING_BOX_EDITOR", {"default": [], FRONTEND_WIDGET: True}),
            },
            "optional": {
                "background": ("IMAGE",),
                "bboxes": ("BOUNDING_BOX,ARRAY,STRING",),
            },
        }

    def create(
        self,
        width: int,
        height: int,
        boxes: Any = None,
        relations: Any = None,
        background: Any = None,
        bboxes: Any = None,
    ) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
        del relations
        node = "CreateBoundingBoxes"
        given = _box_list(bboxes, node, "bboxes") if bboxes is not None else []
        drawn = _box_list(boxes if boxes is not None else [], node, "boxes")
        every = given + drawn
        elements = elements_of(every, width, height)
        plain: list[dict[str, Any]] = [
            {key: box[key] for key in ("x", "y", "width", "height") if key in box} for box in every
        ]
        return _preview(background, elements, width, height), plain, elements


class Flux3LayoutPrompt:
    DESCRIPTION = (
        "Flux 3's layout prompt: the caption, with every element cited as <id>, then the elements as a "
        "JSON table. Without elements the caption is passed on unchanged."
    )
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt",)
    FUNCTION = "build"
    CATEGORY = "conditioning/flux3"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "element": ("ARRAY",),
                "prompt": ("STRING", {"multiline": True, "default": ""}),
            }
        }

    def build(self, element: Any, prompt: str) -> tuple[str]:
        elements = element if isinstance(element, list) else [element]
        bad = [e for e in elements if not isinstance(e, dict) or "id" not in e]
        if bad:
            raise ValueError("Flux3LayoutPrompt: input 'element' must be CreateBoundingBoxes' elements")
        if not elements:
            return (prompt,)
        text = prompt.strip()
        for item in elements:
            citation = f"<{item['id']}>"
            if citation not in text:
                text = f"{text} {citation}".strip()
        table = json.dumps(elements, separators=(",", ":"), ensure_ascii=False)
        return (f"{text} {table}",)


NODE_CLASS_MAPPINGS = {"CreateBoundingBoxes": CreateBoundingBoxes, "Flux3LayoutPrompt": Flux3LayoutPrompt}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CreateBoundingBoxes": "Create Bounding Boxes",
    "Flux3LayoutPrompt": "Flux 3 Layout Prompt",
}
