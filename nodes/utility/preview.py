"""PreviewAny: show any value as text on the canvas, and pass that text on (newer ComfyUI gives the node a
STRING output, which the Qwen-Image 2.1 templates feed into the text encoder)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from engine.native import Input, Node, Output, Socket, Ui, WithUi

AnyValue = Annotated[Any, Socket("*")]


def as_text(value: Any) -> str:
    """Strings as they are, numbers and booleans by str(), anything else as JSON or, failing that, str()."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    if value is None:
        return "None"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        try:
            return str(value)
        except Exception:  # any object's __str__ may fail; the node must still show something
            return "source exists, but could not be serialized."


class PreviewAny(Node):
    """Show the value on the node as text."""

    display_name = "Preview Any"
    category = "utils"
    output_node = True

    def run(self, source: Annotated[AnyValue, Input("Any value.")]) -> Annotated[str, Output("STRING")]:
        text = as_text(source)
        return WithUi(text, Ui(text=[text]))  # type: ignore[return-value]
