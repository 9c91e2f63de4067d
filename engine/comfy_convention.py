"""NodeSpec from ComfyUI's node class convention, so existing custom node packs load unchanged.

The convention: `INPUT_TYPES()` (required / optional / hidden), `RETURN_TYPES`, `RETURN_NAMES`,
`OUTPUT_IS_LIST`, `FUNCTION`, `CATEGORY`, `OUTPUT_NODE`, `DESCRIPTION`, `IS_CHANGED`,
`VALIDATE_INPUTS`, `INPUT_IS_LIST`, `NOT_IDEMPOTENT`, `check_lazy_status`.

Registration is as lenient as ComfyUI's: a declaration ComfyUI accepts is registered even when Loom's
checks dislike it (a declared input the function does not take, no FUNCTION, RETURN_NAMES of another
length, a type head that is neither a name nor a list); each such finding becomes a warning on the
NodeSpec, which the pack report shows. Only a class whose INPUT_TYPES() cannot be read is rejected.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from engine.spec import (
    ANY_TYPE,
    COMBO,
    SHOWN_FOR_OPTION,
    InputSpec,
    NodeDefinitionError,
    NodeSpec,
    OutputSpec,
    Section,
    parameter_names,
)

SECTIONS: tuple[Section, ...] = ("required", "optional", "hidden")


def comfy_spec(
    node_id: str, cls: type, display_name: str | None = None, python_module: str | None = None
) -> NodeSpec:
    warnings: list[str] = []
    inputs = _inputs(node_id, cls, warnings)
    outputs = _outputs(cls, warnings)
    function_name = getattr(cls, "FUNCTION", None)
    if isinstance(function_name, str) and callable(getattr(cls, function_name, None)):
        accepts_extra = _check_signature(cls, function_name, inputs, warnings)
    else:
        # ComfyUI registers display-only nodes (notes, reroutes drawn by the front end) without one.
        warnings.append(f"FUNCTION {function_name!r} does not name a method of the class; it cannot run")
        accepts_extra = True
    validate = getattr(cls, "VALIDATE_INPUTS", None)

    def invoke(instance: Any, values: dict[str, Any], ctx: Any) -> Any:
        method = getattr(instance, str(function_name), None)
        if not callable(method):
            raise TypeError(f"node {node_id!r} has no FUNCTION method {function_name!r} to run")
        return method(**values)

    def check_lazy(instance: Any, values: dict[str, Any]) -> Any:
        return instance.check_lazy_status(**values)

    return NodeSpec(
        id=node_id,
        display_name=display_name or getattr(cls, "DISPLAY_NAME", None) or node_id,
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
        warnings=tuple(warnings),
    )


def _inputs(node_id: str, cls: type, warnings: list[str]) -> list[InputSpec]:
    try:
        declared = cls.INPUT_TYPES()  # type: ignore[attr-defined]
    except Exception as exc:
        raise NodeDefinitionError(node_id, f"INPUT_TYPES() raised {exc!r}") from exc
    if not isinstance(declared, dict):
        raise NodeDefinitionError(node_id, "INPUT_TYPES() must return a dict of required/optional/hidden")
    if not set(declared) <= set(SECTIONS):
        warnings.append(
            f"INPUT_TYPES() sections {sorted(set(declared) - set(SECTIONS))} are not ComfyUI's; ignored"
        )
    specs = []
    for section in SECTIONS:
        for name, config in (declared.get(section) or {}).items():
            specs.append(_input(cls, section, name, config, warnings))
    return specs


def _input(cls: type, section: Section, name: str, config: Any, warnings: list[str]) -> InputSpec:
    if isinstance(config, str):  # hidden inputs: {"prompt": "PROMPT"}
        config = (config,)
    if not isinstance(config, (tuple, list)) or not config:
        warnings.append(f"input {name!r}: declaration {config!r} is not (type, options); accepts any type")
        return InputSpec(name, ANY_TYPE, section, {})
    head, options = config[0], config[1] if len(config) > 1 else {}
    if not isinstance(options, dict):
        warnings.append(f"input {name!r}: options {options!r} are not a dict; ignored")
        options = {}
    shown_for = None
    if SHOWN_FOR_OPTION in options:
        options = dict(options)
        shown_for = tuple(options.pop(SHOWN_FOR_OPTION))
    if isinstance(head, (list, tuple)):
        return InputSpec(name, COMBO, section, options, _live_choices(cls, section, name), shown_for)
    if not isinstance(head, str):
        warnings.append(f"input {name!r}: type {head!r} is neither a type name nor a list; accepts any type")
        return InputSpec(name, ANY_TYPE, section, options, shown_for=shown_for)
    return InputSpec(name, head, section, options, shown_for=shown_for)


def _live_choices(cls: type, section: str, name: str) -> Callable[[], Sequence[Any]]:
    """Combo choices re-read from INPUT_TYPES() each time: packs list files that come and go."""
    return lambda: cls.INPUT_TYPES()[section][name][0]  # type: ignore[attr-defined]


def _outputs(cls: type, warnings: list[str]) -> tuple[OutputSpec, ...]:
    types = getattr(cls, "RETURN_TYPES", None)
    if types is None:
        types = ()
    if not isinstance(types, (tuple, list)):
        warnings.append(f"RETURN_TYPES {types!r} is not a tuple of type names; read as one output")
        types = (types,)
    # A plain tuple: packs' tuple subclasses (rgthree's ByPassTypeTuple) answer any index past
    # their end with "*" and break on slices; the declared outputs are what Loom publishes.
    types = tuple(types)
    names = list(getattr(cls, "RETURN_NAMES", None) or types)
    is_list = list(getattr(cls, "OUTPUT_IS_LIST", None) or [False] * len(types))
    tooltips = list(getattr(cls, "OUTPUT_TOOLTIPS", None) or [None] * len(types))
    if not len(names) == len(is_list) == len(types):
        warnings.append(
            "RETURN_NAMES / OUTPUT_IS_LIST length differs from RETURN_TYPES; missing ones defaulted"
        )
    # ComfyUI pads a short OUTPUT_IS_LIST with its last value and RETURN_NAMES with the types.
    names += [str(t) for t in types[len(names) :]]
    is_list += [is_list[-1] if is_list else False] * (len(types) - len(is_list))
    tooltips += [None] * (len(types) - len(tooltips))
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


def _check_signature(cls: type, function_name: str, inputs: list[InputSpec], warnings: list[str]) -> bool:
    """Warn when the function does not take a declared input (ComfyUI passes it whenever the prompt
    has it) or requires a parameter no input provides. True when it takes **kwargs."""
    try:
        params = _callable_params(cls, function_name)
    except (TypeError, ValueError):  # a builtin or wrapped callable without a readable signature
        return True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
    for spec in inputs:
        if spec.name not in names and not var_keyword:
            warnings.append(
                f"input {spec.name!r}: declared in INPUT_TYPES but {function_name}() does not accept it;"
                " a prompt that sets it fails when the node runs"
            )
    declared = {spec.name for spec in inputs}
    for p in params:
        required = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if required and p.name not in declared:
            warnings.append(
                f"input {p.name!r}: {function_name}() requires it but INPUT_TYPES does not declare it;"
                " the node fails when it runs"
            )
    return var_keyword
