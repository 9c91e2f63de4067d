"""A node's `widgets_values` mapped onto its widget inputs, in the order the frontend creates widgets.

The frontend makes one widget per INT / FLOAT / STRING / BOOLEAN / COMBO input that is not
`forceInput`, in declaration order (required, then optional), and stores some frontend-only values
among them: a "control after generate" combo after seed-like inputs (plus a filter text after a
combo that has one) and an upload button after the required inputs when a combo offers uploads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from engine.spec import COMBO, PRIMITIVE_TYPES, InputSpec, NodeSpec
from engine.ui_workflow.model import UiNode

Kind = Literal["value", "control", "filter", "upload", "legacy"]

# Values of the control widget (booleans in workflows from before it was a combo).
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
# INT inputs with these names get a control widget unless they say otherwise (useIntWidget).
SEED_NAMES = frozenset({"seed", "noise_seed"})
UPLOAD_BUTTON_VALUE = "image"
_ZERO: dict[str, Any] = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}


@dataclass(frozen=True)
class Widget:
    kind: Kind
    input: InputSpec | None = None  # set for "value"; the others are frontend-only


def wrap(value: Any) -> Any:
    """The frontend's wrapper: a list-valued widget must not be mistaken for a link."""
    return {"__value__": value} if isinstance(value, list) else value


def widget_inputs(node: UiNode, spec: NodeSpec) -> dict[str, Any]:
    """{input name: value} for every widget of the node, defaults where the workflow has none."""
    stored = node.widgets_values
    if isinstance(stored, dict):  # some nodes serialise their widgets by name
        names = [w.input.name for w in layout(spec) if w.input is not None]
        values = {name: stored[name] for name in names if name in stored}
    else:
        values = _positional(spec, stored or [])
    return {
        item.name: wrap(values[item.name]) if item.name in values else _default(item)
        for item in (w.input for w in layout(spec) if w.input is not None)
    }


def layout(spec: NodeSpec, legacy: bool = False) -> list[Widget]:
    """The node's widgets in frontend order. `legacy`: old workflows also stored forceInput values."""
    widgets: list[Widget] = []
    has_upload = any(
        i.type == COMBO and any(i.options.get(o) is True for o in UPLOAD_OPTIONS)
        for i in spec.sections("required")
    )
    for section in ("required", "optional"):
        for item in spec.sections(section):
            if item.type not in PRIMITIVE_TYPES:
                continue
            if item.options.get("forceInput"):
                widgets.extend([Widget("legacy")] if legacy else [])
                continue
            widgets.append(Widget("value", item))
            if _has_control(item):
                widgets.append(Widget("control"))
                widgets.extend([Widget("filter")] if item.type == COMBO else [])
        if section == "required" and has_upload:
            widgets.append(Widget("upload"))
    return widgets


def _has_control(item: InputSpec) -> bool:
    if item.type == "INT":
        return bool(item.options.get("control_after_generate", item.name in SEED_NAMES))
    return item.type in ("FLOAT", COMBO) and bool(item.options.get("control_after_generate"))


def _positional(spec: NodeSpec, stored: list[Any]) -> dict[str, Any]:
    """Exact layouts first (current, then legacy); otherwise skip extras only where the values fit."""
    for legacy in (False, True):
        widgets = layout(spec, legacy)
        if len(widgets) == len(stored):
            return {w.input.name: v for w, v in zip(widgets, stored, strict=True) if w.input is not None}
    values: dict[str, Any] = {}
    position = 0
    control_stored = False
    for widget in layout(spec):
        if position >= len(stored):
            break
        value = stored[position]
        if widget.input is not None:
            values[widget.input.name] = value
            position += 1
            continue
        fits = _fits(widget.kind, value, control_stored)
        if widget.kind == "control":
            control_stored = fits
        position += fits
    return values


def _fits(kind: Kind, value: Any, after_control: bool) -> bool:
    """Whether `value` looks like the frontend-only widget of this kind (used only on a length mismatch)."""
    if kind == "control":
        return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)
    if kind == "filter":
        return after_control and isinstance(value, str)
    return value == UPLOAD_BUTTON_VALUE


def _default(item: InputSpec) -> Any:
    """What the canvas shows for a widget with no stored value: the declared default, else the first
    choice of a combo, else the type's zero."""
    if "default" in item.options:
        return wrap(item.options["default"])
    if item.type == COMBO and item.choices is not None:
        choices = list(item.choices())
        return choices[0] if choices else ""
    return _ZERO.get(item.type, "")
