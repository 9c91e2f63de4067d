"""ComfyUI's newer V3 inputs whose set of inputs depends on the node's use: `DynamicCombo` (a combo
whose chosen option brings its own inputs) and `Autogrow` with `TemplateNames` / `TemplatePrefix`
(a run of inputs from one template), plus the `Tracks` and `BoundingBox` sockets.

Loom's NodeSpec is fixed, so each is published as the union of what it can show: the combo (or
nothing, for Autogrow) followed by every possible sub-input, named `<id>.<sub-input>` as ComfyUI's
prompts name them, optional. At run time the node's `execute` receives ComfyUI's nested value: a
DynamicCombo `method` arrives as `{"method": "<chosen key>", "<sub-input>": value, ...}` (the chosen
option's inputs only, defaults filled in), an Autogrow `values` as `{"<name>": value, ...}` (the
inputs given). A sub-input declared by several options with different limits is published once,
with the widest limits.
"""

from __future__ import annotations

import copy
from typing import Any

from comfy_api.latest._io import Combo, ComfyTypeIO, DynamicInput, Input, WidgetInput, comfytype


def _published(item: Input, prefix: str, optional: bool) -> Input:
    out = copy.copy(item)
    out.id, out.optional = f"{prefix}.{item.id}", optional
    return out


def _widen(kept: Input, other: Input) -> None:
    """One published input for a name several options declare: the widest min/max wins."""
    for bound, pick in (("min", min), ("max", max)):
        a, b = getattr(kept, bound, None), getattr(other, bound, None)
        if a is not None and b is not None:
            setattr(kept, bound, pick(a, b))
        elif a is not None:
            setattr(kept, bound, None)  # one option has no limit: neither has the union


class DynamicCombo:
    """A combo whose selected option (`Option(key, inputs)`) adds that option's inputs."""

    Type = dict
    io_type = "COMBO"

    class Option:
        def __init__(self, key: str, inputs: list[Input]) -> None:
            self.key, self.inputs = key, list(inputs)

    class Input(DynamicInput):
        def __init__(
            self, id: str, options: list[DynamicCombo.Option], display_name: str | None = None,
            optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
            extra_dict: dict[str, Any] | None = None, **extra: Any,
        ) -> None:  # fmt: skip
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            if not options:
                raise ValueError(f"DynamicCombo {id!r} needs at least one option")
            self.options = list(options)

        def get_dynamic(self) -> list[Input]:
            keys = [option.key for option in self.options]
            combo = Combo.Input(
                self.id, options=keys, display_name=self.display_name, optional=self.optional,
                tooltip=self.tooltip, lazy=self.lazy, default=keys[0], extra_dict=self.extra_dict,
            )  # fmt: skip
            subs: dict[str, Input] = {}
            shown: dict[str, list[str]] = {}
            for option in self.options:
                for item in option.inputs:
                    if item.id in subs:
                        _widen(subs[item.id], item)
                    else:
                        subs[item.id] = _published(item, self.id, True)
                    shown.setdefault(item.id, []).append(option.key)
            # Which options show each sub-input: the UI conversion places only the chosen option's widgets.
            for key, item in subs.items():
                item.loom_shown_for = tuple(shown[key])
            return [combo, *subs.values()]

        def nest(self, values: dict[str, Any]) -> dict[str, Any]:
            """The flat `<id>.<sub>` values turned into the node's nested dict for the chosen key."""
            chosen = values.get(self.id)
            option = next((o for o in self.options if o.key == chosen), None)
            prefix = f"{self.id}."
            flat = {k[len(prefix) :]: values.pop(k) for k in list(values) if k.startswith(prefix)}
            if option is None:
                return values  # no (or an unknown) choice: validation has reported it
            nested: dict[str, Any] = {self.id: chosen}
            for item in option.inputs:
                if item.id in flat:
                    nested[item.id] = flat[item.id]
                elif isinstance(item, WidgetInput) and item.default is not None:
                    nested[item.id] = item.default
            values[self.id] = nested
            return values


class _Template:
    def __init__(self, input: Input, names: list[str], min: int) -> None:
        self.input, self.names, self.min = input, list(names), min


class Autogrow:
    """A run of inputs made from one template. `Input(id, template=TemplateNames(...) |
    TemplatePrefix(...))` publishes `<id>.<name>` inputs and passes `{name: value}`; the older
    `Input(id, template_input, min, max)` publishes `<template id><n>` inputs passed one by one."""

    class TemplateNames(_Template):
        def __init__(self, input: Input, names: list[str], min: int = 1) -> None:
            super().__init__(input, names, min)

    class TemplatePrefix(_Template):
        def __init__(self, input: Input, prefix: str, min: int = 1, max: int = 10) -> None:
            super().__init__(input, [f"{prefix}{n}" for n in range(max)], min)

    class Input(DynamicInput):
        def __init__(
            self, id: str, template_input: Input | None = None, min: int = 1, max: int | None = None,
            display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
            lazy: bool | None = None, extra_dict: dict[str, Any] | None = None,
            template: _Template | None = None,
        ) -> None:  # fmt: skip
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            if template is None and template_input is None:
                raise ValueError(f"Autogrow {id!r} needs a template")
            self.template = template
            self.template_input, self.min = template_input, min
            self.max = max if max is not None else min

        def get_dynamic(self) -> list[Input]:
            if self.template is not None:
                return [
                    _published(
                        _named(self.template.input, name), self.id,
                        self.optional or self.template.input.optional or index >= self.template.min,
                    )
                    for index, name in enumerate(self.template.names)
                ]  # fmt: skip
            assert self.template_input is not None
            made = []
            for number in range(1, max(self.min, self.max) + 1):
                item = copy.copy(self.template_input)
                item.id = f"{self.template_input.id}{number}"
                if item.display_name is not None:
                    item.display_name = f"{item.display_name}{number}"
                item.optional = self.optional or item.optional or number > self.min
                if isinstance(item, WidgetInput):
                    item.force_input = True
                made.append(item)
            return made

        def nest(self, values: dict[str, Any]) -> dict[str, Any]:
            if self.template is None:
                return values
            prefix = f"{self.id}."
            values[self.id] = {k[len(prefix) :]: values.pop(k) for k in list(values) if k.startswith(prefix)}
            return values


def _named(item: Input, name: str) -> Input:
    out = copy.copy(item)
    out.id = name
    if getattr(out, "input_override", None) is not None:  # a MultiType around a widget input
        out.input_override = copy.copy(out.input_override)
        out.input_override.id = name
    return out


@comfytype(io_type="TRACKS")
class Tracks(ComfyTypeIO):
    """Point tracks: `{"track_path": [frames, points, 2], "track_visibility": [frames, points]}`."""

    Type = dict


@comfytype(io_type="BOUNDING_BOX")
class BoundingBox(ComfyTypeIO):
    """One box: `{"x", "y", "width", "height"}` in pixels; its input is a widget (a box drawn in the
    node, or linked with `force_input`)."""

    Type = dict

    class Input(WidgetInput):
        pass


def nest_dynamic(inputs: list[Input], values: dict[str, Any]) -> dict[str, Any]:
    """A V3 node's flat input values with its dynamic inputs' values nested (see the module doc)."""
    for declared in inputs:
        nest = getattr(declared, "nest", None)
        if nest is not None:
            values = nest(values)
    return values
