"""Loom's native node form: a class whose `run()` signature *is* the declaration.

    class ImageInvert(Node):
        '''Invert the colours of an image.'''
        category = "image"

        def run(self, image: Annotated[Image, Input("The image to invert.")]) -> Image:
            return 1.0 - image

Each parameter of `run` is an input: its annotation gives the type (`int`, `float`, `str`, `bool`,
a socket type such as `Image`, or `str` with `choices=` for a combo), `Input(...)` the description
and constraints, its default the widget default; a default of `None` makes it optional. The return
annotation gives the outputs: one type (named by `Output(...)` in `Annotated[...]`, else by its type),
a `NamedTuple` of several named outputs, or `Ui` for an output node that only shows something.
A parameter named `ctx` receives the node's `Context`.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, Union

from engine.spec import COMBO, InputSpec, NodeDefinitionError, NodeSpec, OutputSpec, Section, parameter_names


@dataclass(frozen=True)
class Socket:
    """Marks a type that travels along links only (IMAGE, LATENT, MODEL, ...)."""

    type: str


@dataclass(frozen=True)
class Input:
    """Description and constraints of one input, used inside `Annotated[...]`."""

    description: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    # FLOAT widgets: the precision the front end rounds typed values to; False keeps them unrounded
    # (needed where step is coarser than the value, e.g. sigma_min 0.0291675 with step 0.01).
    round: float | bool | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    multiline: bool = False
    # Seeds: the canvas offers fixed / increment / decrement / randomize after each run.
    control_after_generate: bool = False
    force_input: bool = False
    # Evaluated only when check_lazy_status asks for it (ComfyUI's lazy inputs).
    lazy: bool = False
    # Further ComfyUI widget options published as they are, e.g. {"display": "color"}.
    extra: dict[str, Any] | None = None
    # Combos: ComfyUI's classic nodes publish no default (the front end shows the first choice), so a
    # combo's default stays out of /object_info unless this is set, as for ComfyUI's nodes that do.
    publish_default: bool = False
    # The published name where it is not a Python identifier, e.g. a DynamicCombo's sub-input
    # "format.bit_depth" (ComfyUI's prompt name); run() still receives it under its parameter name.
    name: str | None = None
    # A DynamicCombo's sub-input: the options of its parent combo (the part of `name` before the dot)
    # under which the front end shows it; None shows it under every option.
    shown_for: Sequence[Any] | None = None


@dataclass(frozen=True)
class Output:
    """Names a single output, used inside the return annotation: `-> Annotated[int, Output("length")]`."""

    name: str


class Ui(dict[str, Any]):
    """What an output node shows in the UI, e.g. `Ui(images=[{"filename": ..., "type": "output"}])`."""


@dataclass(frozen=True)
class WithUi:
    """An output node's outputs together with what it shows: `return WithUi(images, Ui(images=[...]))`
    (a tuple of values for several outputs)."""

    result: Any
    ui: Ui


Image = Annotated[Any, Socket("IMAGE")]
Mask = Annotated[Any, Socket("MASK")]
Latent = Annotated[dict, Socket("LATENT")]
Conditioning = Annotated[list, Socket("CONDITIONING")]
Model = Annotated[Any, Socket("MODEL")]
Clip = Annotated[Any, Socket("CLIP")]
Vae = Annotated[Any, Socket("VAE")]

_PRIMITIVES: dict[type, str] = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}
CONTEXT_PARAM = "ctx"


class Node:
    """Base class of native nodes. The node id is the class name unless `node_id` is set."""

    node_id: ClassVar[str | None] = None
    display_name: ClassVar[str | None] = None
    category: ClassVar[str] = "loom"
    version: ClassVar[str] = "1"
    output_node: ClassVar[bool] = False
    # Identical copies of this node in one prompt are not merged and it never hits the cache.
    not_idempotent: ClassVar[bool] = False
    # ComfyUI's DEPRECATED / EXPERIMENTAL flags, published in /object_info (the front end marks them).
    deprecated: ClassVar[bool] = False
    experimental: ClassVar[bool] = False
    # ComfyUI's INPUT_IS_LIST: run() receives every input as a list, called once per prompt.
    input_is_list: ClassVar[bool] = False
    # ComfyUI's OUTPUT_IS_LIST, one flag per output: such an output is a list fanned out downstream.
    output_is_list: ClassVar[tuple[bool, ...]] = ()
    # The hidden inputs ComfyUI's node of this name declares, e.g. {"prompt": "PROMPT"}: published in
    # /object_info as ComfyUI does; a native node reads them from its `ctx`.
    hidden: ClassVar[dict[str, str]] = {}

    # Optional hooks, as classmethods taking the literal inputs:
    #   fingerprint(cls, **inputs) -> extra cache-key material (ComfyUI's IS_CHANGED; NaN: always re-run)
    #   validate(cls, **inputs) -> True or a message (ComfyUI's VALIDATE_INPUTS)
    #   check_lazy_status(self, **inputs) -> names of lazy inputs still needed (None: none)
    run: Callable[..., Any]


def native_spec(cls: type[Node]) -> NodeSpec:
    node_id = cls.node_id or cls.__name__
    run = getattr(cls, "run", None)
    if run is None:
        raise NodeDefinitionError(node_id, "a native node must define run()")
    try:
        hints = typing.get_type_hints(run, include_extras=True)
    except Exception as exc:
        raise NodeDefinitionError(node_id, f"cannot resolve the annotations of run(): {exc}") from exc

    inputs: list[InputSpec] = []
    input_params: list[str] = []
    wants_context = accepts_extra = False
    for param in list(inspect.signature(run).parameters.values())[1:]:
        if param.kind is param.VAR_KEYWORD:
            accepts_extra = True
        elif param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            raise NodeDefinitionError(node_id, "run() inputs must be keyword parameters", param.name)
        elif param.name == CONTEXT_PARAM:
            wants_context = True
        else:
            inputs.append(_input_spec(node_id, param, hints.get(param.name)))
            input_params.append(param.name)

    outputs = _output_specs(node_id, hints.get("return", type(None)))
    if cls.output_is_list:
        if len(cls.output_is_list) != len(outputs):
            raise NodeDefinitionError(node_id, "output_is_list needs one flag per output")
        outputs = tuple(replace(o, is_list=flag) for o, flag in zip(outputs, cls.output_is_list, strict=True))
    check_lazy = getattr(cls, "check_lazy_status", None)
    validate = getattr(cls, "validate", None)
    renames = {i.name: p for i, p in zip(inputs, input_params, strict=True) if i.name != p}
    invoke = _invoker(outputs, wants_context, renames)
    return NodeSpec(
        id=node_id,
        display_name=cls.display_name or node_id,
        category=cls.category,
        description=inspect.cleandoc(cls.__doc__ or ""),
        version=cls.version,
        inputs=tuple(inputs),
        outputs=outputs,
        output_node=cls.output_node,
        python_module=cls.__module__,
        cls=cls,
        invoke=invoke,
        fingerprint=getattr(cls, "fingerprint", None),
        validate=validate,
        validate_params=parameter_names(validate) if validate else None,
        accepts_extra_inputs=accepts_extra,
        not_idempotent=cls.not_idempotent,
        published_hidden=tuple(cls.hidden.items()),
        input_is_list=cls.input_is_list,
        check_lazy=(lambda instance, values: instance.check_lazy_status(**values)) if check_lazy else None,
        native=True,
        extra_info={k: True for k in ("DEPRECATED", "EXPERIMENTAL") if getattr(cls, k.lower())},
    )


def _split(annotation: Any) -> tuple[Any, list[Any], bool]:
    """(base type, Annotated metadata, optional?) of an annotation such as `Annotated[X | None, m]`."""
    metadata: list[Any] = []
    optional = False
    while True:
        if typing.get_origin(annotation) is Annotated:
            metadata.extend(annotation.__metadata__)
            annotation = annotation.__origin__
        elif typing.get_origin(annotation) in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                return annotation, metadata, optional
            annotation = args[0]
        else:
            return annotation, metadata, optional


def _type_name(annotation: Any, metadata: list[Any], has_choices: bool) -> str | None:
    socket = next((m for m in metadata if isinstance(m, Socket)), None)
    if socket:
        return socket.type
    if has_choices:
        return COMBO
    return _PRIMITIVES.get(annotation)


def _input_spec(node_id: str, param: inspect.Parameter, annotation: Any) -> InputSpec:
    if annotation is None:
        raise NodeDefinitionError(node_id, "has no type annotation", param.name)
    base, metadata, optional = _split(annotation)
    info = next((m for m in metadata if isinstance(m, Input)), Input())
    type_name = _type_name(base, metadata, info.choices is not None)
    if type_name is None:
        raise NodeDefinitionError(node_id, f"unsupported input type {annotation!r}", param.name)

    options: dict[str, Any] = {}
    section: Section = "required"
    if param.default is None or (optional and param.default is inspect.Parameter.empty):
        section = "optional"
    elif param.default is not inspect.Parameter.empty:
        options["default"] = param.default
    for key in ("min", "max", "step", "round"):
        if getattr(info, key) is not None:
            options[key] = getattr(info, key)
    if info.multiline:
        options["multiline"] = True
    if info.control_after_generate:
        options["control_after_generate"] = True
    if info.force_input:
        options["forceInput"] = True
    if info.lazy:
        options["lazy"] = True
    if info.extra:
        options.update(info.extra)
    if info.description:
        options["tooltip"] = info.description

    choices = _choices_getter(info.choices)
    _check_default(node_id, param.name, options, choices)
    if choices is not None and not info.publish_default:
        options.pop("default", None)
    shown_for = tuple(info.shown_for) if info.shown_for is not None else None
    return InputSpec(info.name or param.name, type_name, section, options, choices, shown_for)


def _choices_getter(choices: Any) -> Callable[[], Sequence[Any]] | None:
    if choices is None or callable(choices):
        return choices
    frozen = tuple(choices)
    return lambda: frozen


def _check_default(
    node_id: str, name: str, options: dict[str, Any], choices: Callable[[], Sequence[Any]] | None
) -> None:
    if "default" not in options:
        return
    default = options["default"]
    if ("min" in options and default < options["min"]) or ("max" in options and default > options["max"]):
        raise NodeDefinitionError(node_id, f"default {default!r} is outside min/max", name)
    if choices is not None and default not in choices():
        raise NodeDefinitionError(node_id, f"default {default!r} is not one of the choices", name)


def _output_specs(node_id: str, annotation: Any) -> tuple[OutputSpec, ...]:
    if annotation in (type(None), None, Ui):
        return ()
    fields = getattr(annotation, "__annotations__", None) if hasattr(annotation, "_fields") else None
    if fields is not None:
        named = typing.get_type_hints(annotation, include_extras=True)
        return tuple(_output_spec(node_id, named[name], name) for name in annotation._fields)
    return (_output_spec(node_id, annotation, None),)


def _output_spec(node_id: str, annotation: Any, name: str | None) -> OutputSpec:
    base, metadata, _ = _split(annotation)
    type_name = _type_name(base, metadata, False)
    if type_name is None:
        raise NodeDefinitionError(
            node_id, f"return annotation {annotation!r} is not a node type; use a NamedTuple for several"
        )
    named = next((m.name for m in metadata if isinstance(m, Output)), None)
    return OutputSpec(type_name, name or named or type_name)


def _invoker(
    outputs: tuple[OutputSpec, ...], wants_context: bool, renames: dict[str, str]
) -> Callable[[Any, dict, Any], Any]:
    """Calls run() (inputs published under another name passed under their parameter's) and turns its
    return value into ComfyUI's shape (a tuple or a ui dict); an `async def run` gives a coroutine
    that does the same once awaited."""
    single = len(outputs) == 1

    def shape(result: Any) -> Any:
        if isinstance(result, Ui):
            return {"ui": dict(result)}
        if isinstance(result, WithUi):
            return {"ui": dict(result.ui), "result": shape(result.result)}
        if single:
            return (result,)
        return () if result is None else tuple(result)

    async def shape_later(pending: Any) -> Any:
        return shape(await pending)

    def invoke(instance: Any, inputs: dict[str, Any], ctx: Any) -> Any:
        if renames:
            inputs = {renames.get(k, k): v for k, v in inputs.items()}
        result = instance.run(**inputs, ctx=ctx) if wants_context else instance.run(**inputs)
        return shape_later(result) if inspect.isawaitable(result) else shape(result)

    return invoke
