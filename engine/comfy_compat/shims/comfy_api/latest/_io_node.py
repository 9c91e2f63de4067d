"""The node half of ComfyUI's V3 `io` module: `Schema`, `Hidden`, `ComfyNode`, `NodeOutput`.

A `ComfyNode` subclass also answers ComfyUI's classic class convention, derived from its schema
(`INPUT_TYPES`, `RETURN_TYPES`, `FUNCTION = "EXECUTE_NORMALIZED"`, `VALIDATE_INPUTS` from
`validate_inputs`, `IS_CHANGED` from `fingerprint_inputs`, ...). That is how Loom's registry turns it
into a NodeSpec: one description, one executor, whichever API the pack was written against.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from comfy_api.latest import _io as io
from engine.spec import SHOWN_FOR_OPTION


class Hidden(str, Enum):  # noqa: UP042 - ComfyUI's str-valued enums
    """Values a node can ask for that are not inputs on the canvas."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """`cls.hidden` inside `execute`: the hidden values this call received (None when not asked for)."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        for member in Hidden:
            setattr(self, member.name, (values or {}).get(member.name))

    def __getattr__(self, name: str) -> Any:
        return None

    @classmethod
    def from_dict(cls, values: dict[Any, Any] | None) -> HiddenHolder:
        by_name = {}
        for key, value in (values or {}).items():
            member = (
                key
                if isinstance(key, Hidden)
                else next((h for h in Hidden if key in (h.name, h.value)), None)
            )
            if member is not None:
                by_name[member.name] = value
        return cls(by_name)


@dataclass
class NodeInfoV1:
    input: dict[str, Any] = field(default_factory=dict)
    output: list[Any] = field(default_factory=list)
    output_is_list: list[bool] = field(default_factory=list)
    output_name: list[str] = field(default_factory=list)
    output_tooltips: list[str | None] = field(default_factory=list)
    name: str = ""
    display_name: str | None = None
    description: str = ""
    category: str = "sd"
    output_node: bool = False


@dataclass
class Schema:
    """What a V3 node declares: id, names, inputs, outputs, hidden values and flags."""

    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    search_aliases: list[str] = field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False
    price_badge: Any = None
    accept_all_inputs: bool = False

    def __post_init__(self) -> None:
        self.inputs, self.outputs, self.hidden = (
            list(self.inputs or []),
            list(self.outputs or []),
            list(self.hidden or []),
        )

    def validate(self) -> None:
        """Input and output ids must be unique, within and across the two lists."""
        inputs = [i.id for i in self.inputs]
        outputs = [o.id for o in self.outputs if o.id is not None]
        clashes = {i for i in inputs if inputs.count(i) > 1} | {o for o in outputs if outputs.count(o) > 1}
        clashes |= set(inputs) & set(outputs)
        if clashes:
            raise ValueError(f"node {self.node_id!r}: ids used more than once: {sorted(clashes)}")

    def finalize(self) -> None:
        """Output nodes get the prompt and extra_pnginfo (to embed in files); outputs get ids."""
        wanted = [Hidden.prompt, Hidden.extra_pnginfo] if self.is_output_node else []
        if self.is_api_node:
            wanted += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org]
        self.hidden += [h for h in wanted if h not in self.hidden]
        for index, output in enumerate(self.outputs):
            if output.id is None:
                output.id = f"_{index}_{output.get_io_type()}_"

    def classic_inputs(self) -> dict[str, dict[str, Any]]:
        """The inputs as ComfyUI's INPUT_TYPES() dict; dynamic inputs (Autogrow) are expanded."""
        sections: dict[str, dict[str, Any]] = {"required": {}}
        for declared in self.inputs:
            items = declared.get_dynamic() if isinstance(declared, io.DynamicInput) else [declared]
            for item in items:
                head = item.options if isinstance(item, io.Combo.Input) else item.get_io_type()
                options = {k: v for k, v in item.as_dict().items() if k != "optional"}
                if getattr(item, "loom_shown_for", None) is not None:
                    options[SHOWN_FOR_OPTION] = item.loom_shown_for
                sections.setdefault("optional" if item.optional else "required", {})[item.id] = (
                    head,
                    options,
                )
        for hidden in self.hidden:
            sections.setdefault("hidden", {})[hidden.name] = (hidden.value,)
        return sections


class _classproperty:
    def __init__(self, getter: Any) -> None:
        self.getter = getter

    def __get__(self, instance: Any, owner: type) -> Any:
        return self.getter(owner)


class ComfyNode:
    """Base class of V3 nodes: override `define_schema` and `execute` (classmethods)."""

    hidden: ClassVar[HiddenHolder] = HiddenHolder()
    FUNCTION: ClassVar[str] = "EXECUTE_NORMALIZED"
    _schemas: ClassVar[dict[type, Schema]] = {}

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"{cls.__name__} must define define_schema()")

    @classmethod
    def execute(cls, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{cls.__name__} must define execute()")

    @classmethod
    def validate_inputs(cls, **kwargs: Any) -> bool | str:
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs: Any) -> list[str]:
        """By default every lazy input that has not been evaluated yet is needed."""
        return [name for name, value in kwargs.items() if value is None]

    @classmethod
    def GET_BASE_CLASS(cls) -> type:
        return ComfyNode

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The classic hooks exist only when the V3 ones are overridden, as in ComfyUI.
        if cls.validate_inputs.__func__ is not ComfyNode.validate_inputs.__func__:  # type: ignore[attr-defined]
            cls.VALIDATE_INPUTS = staticmethod(cls.validate_inputs)  # type: ignore[attr-defined]
        if cls.fingerprint_inputs.__func__ is not ComfyNode.fingerprint_inputs.__func__:  # type: ignore[attr-defined]
            cls.IS_CHANGED = staticmethod(cls.fingerprint_inputs)  # type: ignore[attr-defined]

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        """The schema, checked and finalized (computed once per class)."""
        if cls not in ComfyNode._schemas:
            schema = cls.define_schema()
            schema.validate()
            schema.finalize()
            ComfyNode._schemas[cls] = schema
        return ComfyNode._schemas[cls]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:
        """Re-read on every call: combos list files that come and go."""
        schema = cls.define_schema()
        schema.finalize()
        return schema.classic_inputs()

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict[str, Any]:
        schema = cls.GET_SCHEMA()
        return vars(
            NodeInfoV1(
                input=schema.classic_inputs(),
                output=list(cls.RETURN_TYPES),
                output_is_list=list(cls.OUTPUT_IS_LIST),
                output_name=list(cls.RETURN_NAMES),
                output_tooltips=list(cls.OUTPUT_TOOLTIPS),
                name=schema.node_id,
                display_name=schema.display_name,
                description=schema.description,
                category=schema.category,
                output_node=schema.is_output_node,
            )
        )

    RETURN_TYPES = _classproperty(lambda cls: tuple(o.get_io_type() for o in cls.GET_SCHEMA().outputs))
    RETURN_NAMES = _classproperty(
        lambda cls: tuple(o.display_name or o.get_io_type() for o in cls.GET_SCHEMA().outputs)
    )
    OUTPUT_IS_LIST = _classproperty(lambda cls: tuple(o.is_output_list for o in cls.GET_SCHEMA().outputs))
    OUTPUT_TOOLTIPS = _classproperty(lambda cls: tuple(o.tooltip for o in cls.GET_SCHEMA().outputs))
    CATEGORY = _classproperty(lambda cls: cls.GET_SCHEMA().category)
    DESCRIPTION = _classproperty(lambda cls: cls.GET_SCHEMA().description)
    DISPLAY_NAME = _classproperty(lambda cls: cls.GET_SCHEMA().display_name)
    OUTPUT_NODE = _classproperty(lambda cls: cls.GET_SCHEMA().is_output_node)
    INPUT_IS_LIST = _classproperty(lambda cls: cls.GET_SCHEMA().is_input_list)
    NOT_IDEMPOTENT = _classproperty(lambda cls: cls.GET_SCHEMA().not_idempotent)
    DEPRECATED = _classproperty(lambda cls: cls.GET_SCHEMA().is_deprecated)
    EXPERIMENTAL = _classproperty(lambda cls: cls.GET_SCHEMA().is_experimental)
    API_NODE = _classproperty(lambda cls: cls.GET_SCHEMA().is_api_node)

    def EXECUTE_NORMALIZED(self, **kwargs: Any) -> Any:
        """Call `execute` on a per-call copy of the class that carries the hidden values, and turn its
        NodeOutput into the classic return shape."""
        cls = type(self)
        hidden = {h.name: kwargs.pop(h.name) for h in cls.GET_SCHEMA().hidden if h.name in kwargs}
        bound: type[ComfyNode] = type(
            cls.__name__, (cls,), {"hidden": HiddenHolder(hidden), "__module__": cls.__module__}
        )
        from comfy_api.latest._io_dynamic import nest_dynamic

        result = bound.execute(**nest_dynamic(cls.GET_SCHEMA().inputs, kwargs))
        if inspect.isawaitable(result):
            return _classic_later(result, len(cls.GET_SCHEMA().outputs))
        return classic_result(result, len(cls.GET_SCHEMA().outputs))


async def _classic_later(pending: Any, outputs: int) -> Any:
    return classic_result(await pending, outputs)


class UIOutput:
    """Base of `ui.*` values: what an output node shows (`as_dict()` is the classic "ui" dict)."""

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError


_UIOutput = UIOutput


class NodeOutput:
    """What `execute` returns: the output values, and optionally UI to show, an expansion (new nodes)
    or a message that blocks every node downstream."""

    def __init__(
        self, *args: Any, ui: UIOutput | dict[str, Any] | None = None, expand: dict[str, Any] | None = None,
        block_execution: str | None = None,
    ) -> None:  # fmt: skip
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self) -> tuple[Any, ...] | None:
        return self.args or None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeOutput:
        from comfy_execution.graph import ExecutionBlocker

        result = data.get("result", ())
        if isinstance(result, ExecutionBlocker):
            return cls(block_execution=result.message)
        return cls(*result, ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


def classic_result(result: Any, outputs: int) -> Any:
    """A V3 return value in the classic shape: a tuple, or {"result", "ui", "expand"}."""
    if not isinstance(result, NodeOutput):
        return result  # a V3 node may still return the classic shape
    if result.block_execution is not None:
        from comfy_execution.graph import ExecutionBlocker

        return ExecutionBlocker(result.block_execution)
    classic: dict[str, Any] = {"result": tuple(result.args)}
    if result.ui is not None:
        classic["ui"] = result.ui.as_dict() if isinstance(result.ui, UIOutput) else result.ui
    if result.expand is not None:
        classic["expand"] = result.expand
    return classic
