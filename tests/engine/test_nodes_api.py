"""Declaring nodes in both forms, registration checks, and the /object_info export."""
# No `from __future__ import annotations` here: nodes declared inside tests need real annotations.

import json
from typing import Annotated, Any, NamedTuple

import pytest

from engine.native import Image, Input, Mask, Node
from engine.registry import NodeRegistry
from engine.spec import NodeDefinitionError


def test_object_info_matches_comfyui_shape(registry: NodeRegistry) -> None:
    info = registry.object_info()
    json.dumps(info)  # must be pure JSON
    add = info["AddNumbers"]
    assert set(add) >= {
        "input", "input_order", "output", "output_is_list", "output_name", "name",
        "display_name", "description", "python_module", "category", "output_node",
    }  # fmt: skip
    assert add["input"]["required"]["a"] == ["FLOAT", {"default": 0.0, "min": -100.0, "max": 100.0}]
    assert add["input_order"] == {"required": ["a", "b"]}
    assert add["output"] == ["FLOAT"] and add["output_name"] == ["sum"] and add["output_is_list"] == [False]
    assert add["display_name"] == "Add Numbers"
    assert add["output_node"] is False and add["category"] == "test"


def test_native_node_publishes_typed_described_inputs(registry: NodeRegistry) -> None:
    scale = registry.object_info()["ImageScale"]
    method, options = scale["input"]["required"]["upscale_method"]
    assert method == ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    # As ComfyUI's classic nodes: a combo publishes no default (the front end shows the first choice).
    assert "default" not in options and options["tooltip"]
    assert scale["input"]["required"]["width"][0] == "INT"
    assert scale["input"]["required"]["width"][1]["min"] == 0
    assert scale["input_order"]["required"] == ["image", "upscale_method", "width", "height", "crop"]
    assert scale["output"] == ["IMAGE"] and scale["display_name"] == "Upscale Image"
    assert scale["description"].startswith("Resize an image")
    load = registry.object_info()["LoadImage"]
    assert load["output"] == ["IMAGE", "MASK"] and load["output_name"] == ["IMAGE", "MASK"]
    save = registry.object_info()["SaveImage"]
    assert save["output_node"] is True
    assert save["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert save["input_order"]["hidden"] == ["prompt", "extra_pnginfo"]
    stitch = registry.object_info()["ImageStitch"]["input"]["required"]["direction"]
    assert stitch[1]["default"] == "right"  # ComfyUI publishes this one


def test_native_optional_input_and_named_outputs() -> None:
    class Pair(NamedTuple):
        picture: Image
        alpha: Mask

    class Split(Node):
        """Split."""

        def run(self, image: Image, mask: Mask | None = None) -> Pair:
            return Pair(image, mask)

    info = NodeRegistry()
    spec = info.register(Split)
    assert [(i.name, i.type, i.section) for i in spec.inputs] == [
        ("image", "IMAGE", "required"),
        ("mask", "MASK", "optional"),
    ]
    assert [(o.type, o.name) for o in spec.outputs] == [("IMAGE", "picture"), ("MASK", "alpha")]


def test_native_float_input_publishes_round() -> None:
    class Sigma(Node):
        """A sigma."""

        def run(
            self,
            exact: Annotated[
                float, Input("Kept as typed.", min=0.0, max=10.0, step=0.01, round=False)
            ] = 0.0291675,
            coarse: Annotated[float, Input("Rounded.", step=0.1)] = 1.0,
        ) -> float:
            return exact + coarse

    registry = NodeRegistry()
    registry.register(Sigma)
    required = registry.object_info()["Sigma"]["input"]["required"]
    assert required["exact"][1]["round"] is False and required["exact"][1]["default"] == 0.0291675
    assert "round" not in required["coarse"][1]


def comfy_class(inputs: dict[str, Any], function_source: str) -> type:
    namespace: dict[str, Any] = {}
    exec(function_source, namespace)  # a pack author's method, as written
    return type(
        "Declared",
        (),
        {
            "INPUT_TYPES": classmethod(lambda cls: inputs),
            "RETURN_TYPES": ("INT",),
            "FUNCTION": "go",
            "go": namespace["go"],
        },
    )


def test_comfy_node_whose_function_lacks_a_declared_input_registers_with_a_warning() -> None:
    # ComfyUI registers it (the input may be optional and never set); Loom says what it dislikes.
    cls = comfy_class({"required": {"a": ("INT",), "b": ("INT",)}}, "def go(self, a): return (a,)")
    spec = NodeRegistry().register(cls, "Lax")
    assert len(spec.warnings) == 1 and spec.warnings[0].startswith("input 'b'")


def test_comfy_node_whose_function_needs_an_undeclared_input_registers_with_a_warning() -> None:
    cls = comfy_class({"required": {"a": ("INT",)}}, "def go(self, a, extra): return (a,)")
    spec = NodeRegistry().register(cls, "Lax")
    assert (
        len(spec.warnings) == 1 and "'extra'" in spec.warnings[0] and "does not declare" in spec.warnings[0]
    )


def test_comfy_node_with_kwargs_accepts_any_declared_input() -> None:
    cls = comfy_class(
        {"required": {"a": ("INT",)}, "optional": {"b": ("*",)}}, "def go(self, **kw): return (1,)"
    )
    spec = NodeRegistry().register(cls, "Flexible")
    assert spec.accepts_extra_inputs


def test_native_node_with_unannotated_input_is_rejected() -> None:
    class Untyped(Node):
        def run(self, value):  # type: ignore[no-untyped-def]
            return value

    with pytest.raises(NodeDefinitionError, match=r"node 'Untyped', input 'value'.*annotation"):
        NodeRegistry().register(Untyped)


def test_native_default_outside_range_is_rejected() -> None:
    class Bad(Node):
        def run(self, steps: Annotated[int, Input("Steps.", min=1, max=10)] = 50) -> int:
            return steps

    with pytest.raises(NodeDefinitionError, match=r"input 'steps'.*outside"):
        NodeRegistry().register(Bad)


def test_duplicate_node_id_is_rejected(registry: NodeRegistry) -> None:
    from nodes.image.basic import ImageInvert

    with pytest.raises(NodeDefinitionError, match="already registered"):
        registry.register(ImageInvert)


def test_combo_choices_are_read_fresh_each_time() -> None:
    files = ["a.png"]
    cls = comfy_class({"required": {"name": (files,)}}, "def go(self, name): return (1,)")
    registry = NodeRegistry()
    registry.register(cls, "Files")
    files.append("b.png")
    assert registry.object_info()["Files"]["input"]["required"]["name"][0] == ["a.png", "b.png"]
