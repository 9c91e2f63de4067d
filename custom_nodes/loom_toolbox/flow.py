"""Flow helpers in ComfyUI's node convention: a lazy switch and a text display."""

from __future__ import annotations

from typing import Any

ANY = "*"


class LazySwitch:
    """Pass on one of two inputs; only the chosen one is computed (lazy inputs)."""

    DESCRIPTION = "Pass on `on_true` or `on_false`; the branch that is not chosen never runs."
    CATEGORY = "toolbox/flow"
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("value",)
    FUNCTION = "switch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "condition": ("BOOLEAN", {"default": True}),
                "on_true": (ANY, {"lazy": True}),
                "on_false": (ANY, {"lazy": True}),
            }
        }

    def check_lazy_status(self, condition: bool, on_true: Any = None, on_false: Any = None) -> list[str]:
        wanted = "on_true" if condition else "on_false"
        return [wanted] if (on_true if condition else on_false) is None else []

    def switch(self, condition: bool, on_true: Any = None, on_false: Any = None) -> tuple[Any]:
        return (on_true if condition else on_false,)


class ShowText:
    """Show a text on the node (and pass it on)."""

    CATEGORY = "toolbox/text"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "show"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"text": ("STRING", {"forceInput": True})}}

    def show(self, text: str) -> dict[str, Any]:
        return {"ui": {"text": [text]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {"LazySwitch": LazySwitch, "ShowText": ShowText}
NODE_DISPLAY_NAME_MAPPINGS = {"LazySwitch": "Switch (lazy)", "ShowText": "Show Text"}
