"""NodeSpec from ComfyUI's node class convention, so existing custom node packs load unchanged.

The convention: `INPUT_TYPES()` (required / optional / hidden), `RETURN_TYPES`, `RETURN_NAMES`,
`OUTPUT_IS_LIST`, `FUNCTION`, `CATEGORY`, `OUTPUT_NODE`, `DESCRIPTION`, `IS_CHANGED`,
`VALIDATE_INPUTS`, `INPUT_IS_LIST`, `NOT_IDEMPOTENT`, `check_lazy_status`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from engine.spec import COMBO, InputSpec, NodeDefinitionError, NodeSpec, OutputSpec, Section, parameter_names

SECTIONS: tuple[Section, ...] = ("required", "optional", "hidden")


def comfy_spec(
    node_id: str, cls: type, display_name: str | None = None, python_module: str | None = None
) -> NodeSpec:
    inputs = _inputs(node_id, cls)
    outputs = _outputs(node_id, cls)
    function_name = getattr(cls, "FUNCTION", None)
    if not isinstance(function_name, str) or not callable(getattr(cls, function_name, None)):
        raise NodeDefinitionError(node_id, f"FUNCTION {function_name!r} does not name a method of the class")
    accepts_extra = _check_signature(node_id, cls, function_name, inputs)
    validate = getattr(cls, "VALIDATE_INPUTS", None)

    def invoke(instance: Any, values: dict[str, Any], ctx: Any) -> Any:
        return getattr(instance, function_name)(**values)

    def check_lazy(instance: Any, values: dict[str, Any]) -> Any:
        return instance.check_lazy_status(**values)

    return NodeSpec(
        id=node_id,
        display_name=display_name or node_id,
        category=getattr(cls, "CATEGORY", "sd"),
        description=getattr(cls, "DESCRIPTION", "") or "",
        version=str(getattr(cls, "VERSION", "1")),
        inputs=tuple(inputs),
        outputs=outputs,
        output_node=bool(getattr(cls, "OUTPUT_NODE", False)),
        python_module=python_module or cls.__module__,
        cls=cls,
        invoke=invoke,
        fingerprint=getattr(cls, "IS_CHANGED", None),
        validate=validate,
        validate_params=parameter_names(validate) if validate else None,
        accepts_extra_inputs=accepts_extra,
        input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
        check_lazy=check_lazy if callable(getattr(cls, "check_lazy_status", None)) else None,
        not_idempotent=bool(getattr(cls, "NOT_IDEMPOTENT", False)),
        extra_info={k: True for k in ("DEPRECATED", "EXPERIMENTAL") if getattr(cls, k, False)},
    )


def _inputs(node_id: str, cls: type) -> list[InputSpec]:
    try:
        declared = cls.INPUT_TYPES()  # type: ignore[attr-defined]
    except Exception as exc:
        raise NodeDefinitionError(node_id, f"INPUT_TYPES() raised {exc!r}") from exc
    if not isinstance(declared, dict) or not set(declared) <= set(SECTIONS):
        raise NodeDefinitionError(node_id, "INPUT_TYPES() must return a dict of required/optional/hidden")
    specs = []
    for section in SECTIONS:
        for name, config in (declared.get(section) or {}).items():
            specs.append(_input(node_id, cls, section, name, config))
    return specs


def _input(node_id: str, cls: type, section: Section, name: str, config: Any) -> InputSpec:
    if isinstance(config, str):  # hidden inputs: {"prompt": "PROMPT"}
        config = (config,)
    if not isinstance(config, (tuple, list)) or not config:
        raise NodeDefinitionError(node_id, f"declaration {config!r} is not (type, options)", name)
    head, options = config[0], config[1] if len(config) > 1 else {}
    if not isinstance(options, dict):
        raise NodeDefinitionError(node_id, f"options {options!r} are not a dict", name)
    if isinstance(head, (list, tuple)):
        return InputSpec(name, COMBO, section, options, _live_choices(cls, section, name))
    if not isinstance(head, str):
        raise NodeDefinitionError(
            node_id, f"type {head!r} is neither a type name nor a list of choices", name
        )
    return InputSpec(name, head, section, options)


def _live_choices(cls: type, section: str, name: str) -> Callable[[], Sequence[Any]]:
    """Combo choices re-read from INPUT_TYPES() each time: packs list files that come and go."""
    return lambda: cls.INPUT_TYPES()[section][name][0]  # type: ignore[attr-defined]


def _outputs(node_id: str, cls: type) -> tuple[OutputSpec, ...]:
    types = getattr(cls, "RETURN_TYPES", None)
    if not isinstance(types, (tuple, list)):
        raise NodeDefinitionError(node_id, "RETURN_TYPES must be a tuple of type names")
    names = getattr(cls, "RETURN_NAMES", None) or types
    is_list = getattr(cls, "OUTPUT_IS_LIST", None) or [False] * len(types)
    tooltips = getattr(cls, "OUTPUT_TOOLTIPS", None) or [None] * len(types)
    if not len(names) == len(is_list) == len(types):
        raise NodeDefinitionError(node_id, "RETURN_NAMES / OUTPUT_IS_LIST length differs from RETURN_TYPES")
    outputs = []
    for kind, name, listed, tip in zip(types, names, is_list, tooltips, strict=False):
        type_name = COMBO if isinstance(kind, (list, tuple)) else kind
        outputs.append(OutputSpec(str(type_name), str(name), bool(listed), tip))
    return tuple(outputs)


def _callable_params(cls: type, attribute: str) -> list[inspect.Parameter]:
    """Parameters of a method as called on an instance (self / cls dropped)."""
    raw = inspect.getattr_static(cls, attribute)
    params = list(inspect.signature(getattr(cls, attribute)).parameters.values())
    if not isinstance(raw, (staticmethod, classmethod)) and params:
        params = params[1:]  # plain function looked up on the class still lists self
    return params


def _check_signature(node_id: str, cls: type, function_name: str, inputs: list[InputSpec]) -> bool:
    """The function must accept every declared input and every parameter it requires must be declared."""
    params = _callable_params(cls, function_name)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
    for spec in inputs:
        if spec.name not in names and not var_keyword:
            raise NodeDefinitionError(
                node_id, f"declared in INPUT_TYPES but {function_name}() does not accept it", spec.name
            )
    declared = {spec.name for spec in inputs}
    for p in params:
        required = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if required and p.name not in declared:
            raise NodeDefinitionError(
                node_id, f"{function_name}() requires it but INPUT_TYPES does not declare it", p.name
            )
    return var_keyword
