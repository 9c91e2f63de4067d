"""NodeSpec: the one internal description of a node, whichever form it was declared in.

Built by `engine.native` (Loom's typed form) or `engine.comfy_convention` (ComfyUI's class
convention). Options are kept in ComfyUI's shape (`{"default", "min", "max", ...}`) because that is
what `/object_info` publishes and what validation reads.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

Section = Literal["required", "optional", "hidden"]

ANY_TYPE = "*"
COMBO = "COMBO"
# Literal (widget) types: values in the prompt are coerced to these, everything else is a link.
PRIMITIVE_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", COMBO})
# A classic (type, options) pair can carry InputSpec.shown_for under this key (the V3 DynamicCombo shim
# sets it); it is taken out of the options, so /object_info never publishes it.
SHOWN_FOR_OPTION = "loom_shown_for"


class NodeDefinitionError(Exception):
    """A node class whose declaration is inconsistent; raised when it registers."""

    def __init__(self, node_id: str, message: str, input_name: str | None = None) -> None:
        where = f"node {node_id!r}" + (f", input {input_name!r}" if input_name else "")
        super().__init__(f"{where}: {message}")
        self.node_id = node_id
        self.input_name = input_name


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str
    section: Section = "required"
    options: dict[str, Any] = field(default_factory=dict)
    # COMBO inputs: the allowed values, re-read on every call (file lists change at run time).
    choices: Callable[[], Sequence[Any]] | None = None
    # A DynamicCombo's sub-input ("resize_type.width"): the parent's options that show it (None: all).
    # Not published; the UI conversion reads it to know which widgets a saved workflow holds.
    shown_for: tuple[Any, ...] | None = None

    @property
    def lazy(self) -> bool:
        return bool(self.options.get("lazy"))

    @property
    def raw_link(self) -> bool:
        return bool(self.options.get("rawLink"))

    def object_info(self) -> list[Any]:
        """This input as `/object_info` publishes it: `[type, options]` or `[[choices], options]`."""
        head: Any = list(self.choices()) if self.choices is not None else self.type
        return [head, self.options] if self.options else [head]


@dataclass(frozen=True)
class OutputSpec:
    type: str
    name: str
    is_list: bool = False
    tooltip: str | None = None


@dataclass(frozen=True)
class NodeSpec:
    """Everything the registry, validator and executor need to know about one node class."""

    id: str
    display_name: str
    category: str
    description: str
    version: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    output_node: bool
    python_module: str
    cls: type
    # Calls the node: (instance, inputs, context) -> raw return value.
    invoke: Callable[[Any, dict[str, Any], Any], Any]
    # ComfyUI's IS_CHANGED: extra cache-key material; NaN means "always re-run".
    fingerprint: Callable[..., Any] | None = None
    # ComfyUI's VALIDATE_INPUTS and the parameter names it takes (None: **kwargs, takes all).
    validate: Callable[..., Any] | None = None
    validate_params: frozenset[str] | None = None
    accepts_extra_inputs: bool = False
    input_is_list: bool = False
    # ComfyUI's check_lazy_status: (instance, inputs) -> names of lazy inputs still needed.
    check_lazy: Callable[[Any, dict[str, Any]], Any] | None = None
    not_idempotent: bool = False
    # Hidden inputs published in /object_info only (native nodes read them from their Context).
    published_hidden: tuple[tuple[str, str], ...] = ()
    native: bool = False
    extra_info: dict[str, Any] = field(default_factory=dict)
    # What Loom's checks dislike in a declaration ComfyUI accepts: registered anyway, reported per node.
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {i.name: i for i in self.inputs})

    def input(self, name: str) -> InputSpec | None:
        return self._by_name.get(name)  # type: ignore[attr-defined]

    @cached_property
    def lazy_inputs(self) -> frozenset[str]:
        return frozenset(i.name for i in self.inputs if i.lazy)

    def sections(self, section: Section) -> list[InputSpec]:
        return [i for i in self.inputs if i.section == section]


def parameter_names(function: Callable[..., Any]) -> frozenset[str] | None:
    """Names a hook such as VALIDATE_INPUTS accepts; None when it takes **kwargs (it gets everything)."""
    params = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)
