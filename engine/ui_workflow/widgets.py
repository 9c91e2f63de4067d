"""A node's `widgets_values` mapped onto its widget inputs, in the order the frontend creates widgets.

The frontend makes one widget per INT / FLOAT / STRING / BOOLEAN / COMBO input that is not
`forceInput`, in declaration order (required, then optional), and stores some frontend-only values
among them: a "control after generate" combo after seed-like inputs (plus a filter text after a
combo that has one) and an upload button after the required inputs when a combo offers uploads.
A DynamicCombo's sub-inputs (published as "parent.name") follow their parent's widget directly, whatever
their section, and only those of the chosen option are there: `["scale total pixels", 1.6, "area"]` for
ResizeImageMaskNode is resize_type, resize_type.megapixels, scale_method.
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
# An input of another type that the frontend still shows as a widget (a custom editor saving a list,
# such as CreateBoundingBoxes' boxes) says so with this option.
FRONTEND_WIDGET = "frontend_widget"
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
    widgets = [w.input for w in layout(spec, stored=stored) if w.input is not None]
    values = stored_values(spec, stored)
    values |= {name: value for name, value in node.overrides.items() if any(w.name == name for w in widgets)}
    return {item.name: wrap(values[item.name]) if item.name in values else _default(item) for item in widgets}


def stored_values(spec: NodeSpec, stored: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
    """{widget input name: saved value} for the widgets whose value the node stores (no defaults)."""
    if isinstance(stored, dict):  # some nodes serialise their widgets by name
        widgets = [w.input for w in layout(spec, stored=stored) if w.input is not None]
        return {item.name: stored[item.name] for item in widgets if item.name in stored}
    return _positional(spec, stored or [])


def is_widget(item: InputSpec) -> bool:
    """Whether the frontend draws a widget for this input (else it is only a socket)."""
    if item.type not in PRIMITIVE_TYPES and not item.options.get(FRONTEND_WIDGET):
        return False
    return not item.options.get("forceInput")


def layout(
    spec: NodeSpec, legacy: bool = False, stored: list[Any] | dict[str, Any] | None = None
) -> list[Widget]:
    """The node's widgets in frontend order. `legacy`: old workflows also stored forceInput values.
    `stored`: the saved values, which say the option each DynamicCombo shows (else its default)."""
    widgets: list[Widget] = []
    subs = _sub_inputs(spec)
    placed = {item.name for group in subs.values() for item in group}
    has_upload = any(
        i.type == COMBO and any(i.options.get(o) is True for o in UPLOAD_OPTIONS)
        for i in spec.sections("required")
    )
    for section in ("required", "optional"):
        for item in spec.sections(section):
            if item.name in placed:
                continue
            position = len(widgets)
            _add(widgets, item, legacy)
            if item.name in subs:
                chosen = _chosen(item, position, stored)
                for sub in subs[item.name]:
                    if sub.shown_for is None or chosen in sub.shown_for:
                        _add(widgets, sub, legacy)
        if section == "required" and has_upload:
            widgets.append(Widget("upload"))
    return widgets


def _add(widgets: list[Widget], item: InputSpec, legacy: bool) -> None:
    """The widget of one input (none for a socket), with its frontend-only companions."""
    if item.type not in PRIMITIVE_TYPES and not item.options.get(FRONTEND_WIDGET):
        return
    if item.options.get("forceInput"):
        widgets.extend([Widget("legacy")] if legacy else [])
        return
    widgets.append(Widget("value", item))
    if _has_control(item):
        widgets.append(Widget("control"))
        widgets.extend([Widget("filter")] if item.type == COMBO else [])


def _sub_inputs(spec: NodeSpec) -> dict[str, list[InputSpec]]:
    """{DynamicCombo input: its sub-inputs "name.sub", in declaration order}."""
    names = {item.name for item in spec.inputs}
    subs: dict[str, list[InputSpec]] = {}
    for item in spec.sections("required") + spec.sections("optional"):
        parent = item.name.rpartition(".")[0]
        if parent and parent in names:
            subs.setdefault(parent, []).append(item)
    return subs


def _chosen(parent: InputSpec, position: int, stored: list[Any] | dict[str, Any] | None) -> Any:
    """The option a DynamicCombo shows: its saved value (by position, or by name), else its default."""
    if isinstance(stored, dict) and parent.name in stored:
        return stored[parent.name]
    if isinstance(stored, list) and position < len(stored):
        return stored[position]
    return _default(parent)


def _has_control(item: InputSpec) -> bool:
    if item.type == "INT":
        return bool(item.options.get("control_after_generate", item.name in SEED_NAMES))
    return item.type in ("FLOAT", COMBO) and bool(item.options.get("control_after_generate"))


def _positional(spec: NodeSpec, stored: list[Any]) -> dict[str, Any]:
    """Exact layouts first (current, then legacy); otherwise skip extras only where the values fit."""
    for legacy in (False, True):
        widgets = layout(spec, legacy, stored)
        if len(widgets) == len(stored):
            return {w.input.name: v for w, v in zip(widgets, stored, strict=True) if w.input is not None}
    values: dict[str, Any] = {}
    position = 0
    control_stored = False
    for widget in layout(spec, stored=stored):
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
