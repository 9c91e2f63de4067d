"""ComfyUI's V3 `io` module: typed inputs and outputs (`io.Int.Input(...)`, `io.Image.Output()`),
the node `Schema`, `ComfyNode` and `NodeOutput`.

Each type is a class with `io_type` (the socket name `/object_info` publishes) and nested `Input`
and `Output` classes whose `as_dict()` gives the options of ComfyUI's classic `(type, options)` pair.
"""

from __future__ import annotations

import copy
from enum import Enum
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class FolderType(str, Enum):  # noqa: UP042 - ComfyUI's str-valued enums
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):  # noqa: UP042 - ComfyUI's str-valued enums
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):  # noqa: UP042 - ComfyUI's str-valued enums
    number = "number"
    slider = "slider"


class RemoteOptions:
    """A combo whose options the front end fetches from a route."""

    def __init__(
        self,
        route: str,
        refresh_button: bool,
        control_after_refresh: Literal["first", "last"] = "first",
        timeout: int | None = None,
        max_retries: int | None = None,
        refresh: int | None = None,
    ) -> None:
        self.route, self.refresh_button, self.control_after_refresh = (
            route,
            refresh_button,
            control_after_refresh,
        )
        self.timeout, self.max_retries, self.refresh = timeout, max_retries, refresh

    def as_dict(self) -> dict[str, Any]:
        return _pruned(
            {
                "route": self.route,
                "refresh_button": self.refresh_button,
                "control_after_refresh": self.control_after_refresh,
                "timeout": self.timeout,
                "max_retries": self.max_retries,
                "refresh": self.refresh,
            }
        )


def _pruned(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


class _ComfyType:
    Type: Any = Any
    io_type: str = ""


class Input:
    """One input of a V3 node."""

    Parent: type[_ComfyType] | None = None

    def __init__(
        self,
        id: str,
        display_name: str | None = None,
        optional: bool = False,
        tooltip: str | None = None,
        lazy: bool | None = None,
        extra_dict: dict[str, Any] | None = None,
        raw_link: bool | None = None,
        advanced: bool | None = None,
    ) -> None:
        self.id, self.display_name, self.optional = id, display_name, optional
        self.tooltip, self.lazy, self.raw_link, self.advanced = tooltip, lazy, raw_link, advanced
        self.extra_dict = extra_dict or {}

    @property
    def io_type(self) -> Any:
        return self.Parent.io_type if self.Parent else "*"

    def get_io_type(self) -> Any:
        return self.io_type

    def as_dict(self) -> dict[str, Any]:
        options = {
            "display_name": self.display_name,
            "tooltip": self.tooltip,
            "lazy": self.lazy,
            "rawLink": self.raw_link,
            "advanced": self.advanced,
        }
        return _pruned(options) | _pruned(self.extra_dict)


class WidgetInput(Input):
    """An input with a widget (a literal value typed in the node)."""

    def __init__(
        self,
        id: str,
        display_name: str | None = None,
        optional: bool = False,
        tooltip: str | None = None,
        lazy: bool | None = None,
        default: Any = None,
        socketless: bool | None = None,
        widget_type: str | None = None,
        force_input: bool | None = None,
        extra_dict: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, **extra)
        self.default, self.socketless, self.widget_type, self.force_input = (
            default,
            socketless,
            widget_type,
            force_input,
        )

    def get_io_type(self) -> Any:
        return self.widget_type or self.io_type

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | _pruned(
            {
                "default": self.default,
                "socketless": self.socketless,
                "widgetType": self.widget_type,
                "forceInput": self.force_input,
            }
        )


class Output:
    """One output of a V3 node."""

    Parent: type[_ComfyType] | None = None

    def __init__(
        self,
        id: str | None = None,
        display_name: str | None = None,
        tooltip: str | None = None,
        is_output_list: bool = False,
        **extra: Any,
    ) -> None:
        self.id, self.display_name, self.tooltip, self.is_output_list = (
            id,
            display_name,
            tooltip,
            is_output_list,
        )

    @property
    def io_type(self) -> Any:
        return self.Parent.io_type if self.Parent else "*"

    def get_io_type(self) -> Any:
        return self.io_type

    def as_dict(self) -> dict[str, Any]:
        return _pruned({"display_name": self.display_name, "tooltip": self.tooltip})


class ComfyTypeI(_ComfyType):
    """A type that only has inputs."""

    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    """A type with both inputs and outputs."""

    class Output(Output):
        pass


def comfytype(io_type: str, **kwargs: Any) -> Any:
    """Class decorator: sets the socket name and ties the nested Input/Output classes to the type, making
    fresh subclasses so that one type's `io_type` never leaks into another's."""

    def decorate(cls: type[T]) -> type[T]:
        cls.io_type = io_type  # type: ignore[attr-defined]
        for slot in ("Input", "Output"):
            nested = cls.__dict__.get(slot) or getattr(cls, slot, None)
            if nested is not None:
                bound = type(slot, (nested,), {"Parent": cls, "__qualname__": f"{cls.__qualname__}.{slot}"})
                setattr(cls, slot, bound)
        return cls

    return decorate


def Custom(io_type: str) -> type[ComfyTypeIO]:
    """A socket type of the pack's own (`io.Custom("MY_TYPE").Input("x")`)."""

    @comfytype(io_type=io_type)
    class CustomType(ComfyTypeIO):
        pass

    return CustomType


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(
            self, id: str, display_name: str | None = None, optional: bool = False,
            tooltip: str | None = None,
            lazy: bool | None = None, default: bool | None = None, label_on: str | None = None,
            label_off: str | None = None, socketless: bool | None = None, force_input: bool | None = None,
            **extra: Any,
        ) -> None:  # fmt: skip
            super().__init__(
                id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, **extra
            )
            self.label_on, self.label_off = label_on, label_off

        def as_dict(self) -> dict[str, Any]:
            return super().as_dict() | _pruned({"label_on": self.label_on, "label_off": self.label_off})


class _NumberInput(WidgetInput):
    def __init__(
        self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
        lazy: bool | None = None, default: Any = None, min: Any = None, max: Any = None, step: Any = None,
        control_after_generate: bool | None = None, display_mode: NumberDisplay | None = None,
        socketless: bool | None = None, force_input: bool | None = None, round: float | None = None,
        **extra: Any,
    ) -> None:  # fmt: skip
        super().__init__(
            id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, **extra
        )
        self.min, self.max, self.step, self.round = min, max, step, round
        self.control_after_generate, self.display_mode = control_after_generate, display_mode

    def as_dict(self) -> dict[str, Any]:
        display = self.display_mode.value if isinstance(self.display_mode, Enum) else self.display_mode
        return super().as_dict() | _pruned(
            {
                "min": self.min,
                "max": self.max,
                "step": self.step,
                "round": self.round,
                "control_after_generate": self.control_after_generate,
                "display": display,
            }
        )


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(_NumberInput):
        pass


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(_NumberInput):
        pass


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(
            self, id: str, display_name: str | None = None, optional: bool = False,
            tooltip: str | None = None,
            lazy: bool | None = None, multiline: bool = False, placeholder: str | None = None,
            default: str | None = None, dynamic_prompts: bool | None = None, socketless: bool | None = None,
            force_input: bool | None = None, **extra: Any,
        ) -> None:  # fmt: skip
            super().__init__(
                id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, **extra
            )
            self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts

        def as_dict(self) -> dict[str, Any]:
            return super().as_dict() | _pruned(
                {
                    "multiline": self.multiline or None,
                    "placeholder": self.placeholder,
                    "dynamicPrompts": self.dynamic_prompts,
                }
            )


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(
            self, id: str, options: Any = None, display_name: str | None = None, optional: bool = False,
            tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
            control_after_generate: bool | None = None, upload: UploadType | None = None,
            image_folder: FolderType | None = None, remote: RemoteOptions | None = None,
            socketless: bool | None = None, **extra: Any,
        ) -> None:  # fmt: skip
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, **extra)
            self.options = list(options) if options is not None else []
            self.multiselect = False
            self.control_after_generate, self.upload, self.image_folder = (
                control_after_generate,
                upload,
                image_folder,
            )
            self.remote = remote

        def as_dict(self) -> dict[str, Any]:
            upload = {self.upload.value: True} if self.upload is not None else {}
            return (
                super().as_dict()
                | _pruned(
                    {
                        "control_after_generate": self.control_after_generate,
                        "image_folder": self.image_folder.value if self.image_folder else None,
                        "remote": self.remote.as_dict() if self.remote else None,
                    }
                )
                | upload
            )

    class Output(Output):
        def __init__(
            self, id: str | None = None, display_name: str | None = None, options: list[str] | None = None,
            tooltip: str | None = None, is_output_list: bool = False,
        ) -> None:  # fmt: skip
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = options or []

        @property
        def io_type(self) -> Any:
            return self.options


@comfytype(io_type="COMBO")
class MultiCombo(ComfyTypeI):
    Type = list

    class Input(Combo.Input):
        def __init__(self, id: str, options: list[str], *args: Any, **kwargs: Any) -> None:
            placeholder, chip = kwargs.pop("placeholder", None), kwargs.pop("chip", None)
            super().__init__(id, options, *args, **kwargs)
            self.multiselect, self.placeholder, self.chip = True, placeholder, chip

        def as_dict(self) -> dict[str, Any]:
            return super().as_dict() | _pruned(
                {"multi_select": True, "placeholder": self.placeholder, "chip": self.chip}
            )


def _socket(io_type: str, type_hint: Any = Any) -> type[ComfyTypeIO]:
    @comfytype(io_type=io_type)
    class Socket(ComfyTypeIO):
        Type = type_hint

    return Socket


Image = _socket("IMAGE")
Mask = _socket("MASK")
Latent = _socket("LATENT", dict)
Conditioning = _socket("CONDITIONING", list)
Sampler = _socket("SAMPLER")
Sigmas = _socket("SIGMAS")
Noise = _socket("NOISE")
Guider = _socket("GUIDER")
Clip = _socket("CLIP")
ControlNet = _socket("CONTROL_NET")
Vae = _socket("VAE")
Model = _socket("MODEL")
ClipVision = _socket("CLIP_VISION")
ClipVisionOutput = _socket("CLIP_VISION_OUTPUT")
StyleModel = _socket("STYLE_MODEL")
Gligen = _socket("GLIGEN")
UpscaleModel = _socket("UPSCALE_MODEL")
Audio = _socket("AUDIO", dict)
Video = _socket("VIDEO")
SVG = _socket("SVG")
LoraModel = _socket("LORA_MODEL")
LossMap = _socket("LOSS_MAP")
Voxel = _socket("VOXEL")
Mesh = _socket("MESH")
Hooks = _socket("HOOKS")
HookKeyframes = _socket("HOOK_KEYFRAMES")
TimestepsRange = _socket("TIMESTEPS_RANGE")
LatentOperation = _socket("LATENT_OPERATION")
FlowControl = _socket("FLOW_CONTROL")
Accumulation = _socket("ACCUMULATION")
Photomaker = _socket("PHOTOMAKER")
Point = _socket("POINT")
FaceAnalysis = _socket("FACE_ANALYSIS")
BBOX = _socket("BBOX")
SEGS = _socket("SEGS")
AnyType = _socket("*")
MODEL_PATCH = _socket("MODEL_PATCH")
AudioEncoder = _socket("AUDIO_ENCODER")
AudioEncoderOutput = _socket("AUDIO_ENCODER_OUTPUT")
WanCameraEmbedding = _socket("WAN_CAMERA_EMBEDDING")
Webcam = _socket("WEBCAM")
Load3DCamera = _socket("LOAD3D_CAMERA")
Load3D = _socket("LOAD_3D")
Load3DAnimation = _socket("LOAD_3D_ANIMATION")


class MultiType:
    """An input that accepts several socket types (published as `"A,B"`, ComfyUI's union form); when `id`
    is itself an Input, that input gives the widget."""

    Type = Any

    class Input(Input):
        def __init__(
            self, id: Any, types: list[Any], display_name: str | None = None, optional: bool = False,
            tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict[str, Any] | None = None,
        ) -> None:  # fmt: skip
            self.input_override = None
            if isinstance(id, Input):
                self.input_override = copy.copy(id)
                optional = optional or id.optional
                tooltip, display_name = tooltip or id.tooltip, display_name or id.display_name
                lazy = id.lazy if id.lazy is not None else lazy
                id = id.id
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self._types = types

        def get_io_type(self) -> Any:
            names = [t.io_type for t in self._types]
            if self.input_override is not None:
                names.insert(0, self.input_override.get_io_type())
            return ",".join(dict.fromkeys(names))

        def as_dict(self) -> dict[str, Any]:
            override = self.input_override.as_dict() if self.input_override is not None else {}
            return override | super().as_dict()


class DynamicInput(Input):
    """An input that stands for several classic inputs (`get_dynamic()`)."""

    def get_dynamic(self) -> list[Input]:
        return [self]


class MatchType:
    """Inputs and outputs that share one type, chosen by what is connected; published as the union of
    the template's allowed types (`*` when it allows any)."""

    class Template:
        def __init__(self, template_id: str, allowed_types: Any = None) -> None:
            self.template_id = template_id
            types = allowed_types if isinstance(allowed_types, list) else [allowed_types or AnyType]
            self.allowed_types = types

        @property
        def io_type(self) -> str:
            return ",".join(t.io_type for t in self.allowed_types)

    class Input(Input):
        def __init__(self, id: str, template: MatchType.Template, *args: Any, **kwargs: Any) -> None:
            super().__init__(id, *args, **kwargs)
            self.template = template

        def get_io_type(self) -> Any:
            return self.template.io_type

    class Output(Output):
        def __init__(
            self, template: MatchType.Template, id: str | None = None, *args: Any, **kwargs: Any
        ) -> None:
            super().__init__(id, *args, **kwargs)
            self.template = template

        def get_io_type(self) -> Any:
            return self.template.io_type


from comfy_api.latest._io_dynamic import (  # noqa: E402 - built on the types above
    Autogrow,
    BoundingBox,
    DynamicCombo,
    Tracks,
)

AutogrowDynamic = Autogrow

from comfy_api.latest._io_node import (  # noqa: E402 - the node half needs the types above
    ComfyNode,
    Hidden,
    HiddenHolder,
    NodeInfoV1,
    NodeOutput,
    Schema,
)

__all__ = [
    "BBOX",
    "MODEL_PATCH",
    "SEGS",
    "SVG",
    "Accumulation",
    "AnyType",
    "Audio",
    "AudioEncoder",
    "AudioEncoderOutput",
    "Autogrow",
    "AutogrowDynamic",
    "Boolean",
    "BoundingBox",
    "Clip",
    "ClipVision",
    "ClipVisionOutput",
    "Combo",
    "ComfyNode",
    "ComfyTypeI",
    "ComfyTypeIO",
    "Conditioning",
    "ControlNet",
    "Custom",
    "DynamicCombo",
    "DynamicInput",
    "FaceAnalysis",
    "Float",
    "FlowControl",
    "FolderType",
    "Gligen",
    "Guider",
    "Hidden",
    "HiddenHolder",
    "HookKeyframes",
    "Hooks",
    "Image",
    "Input",
    "Int",
    "Latent",
    "LatentOperation",
    "LoraModel",
    "LossMap",
    "Mask",
    "MatchType",
    "Mesh",
    "Model",
    "MultiCombo",
    "MultiType",
    "NodeInfoV1",
    "NodeOutput",
    "Noise",
    "NumberDisplay",
    "Output",
    "Photomaker",
    "Point",
    "RemoteOptions",
    "Sampler",
    "Schema",
    "Sigmas",
    "String",
    "StyleModel",
    "TimestepsRange",
    "Tracks",
    "UploadType",
    "UpscaleModel",
    "Vae",
    "Video",
    "Voxel",
    "WidgetInput",
    "comfytype",
]  # fmt: skip
