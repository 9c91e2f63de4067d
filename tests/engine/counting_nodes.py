"""Test nodes that record every call: one ComfyUI-convention pack style, one native style."""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.context import Context
from engine.native import Input, Node, Ui

CALLS: list[tuple[str, Any]] = []


class AddNumbers:
    """ComfyUI convention: adds two FLOATs."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "a": ("FLOAT", {"default": 0.0, "min": -100.0, "max": 100.0}),
                "b": ("FLOAT", {"default": 0.0}),
            }
        }

    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("sum",)
    FUNCTION = "add"
    CATEGORY = "test"

    def add(self, a: float, b: float) -> tuple[float]:
        CALLS.append(("AddNumbers", (a, b)))
        return (a + b,)


class Scale(Node):
    """Native: multiplies a FLOAT."""

    category = "test"

    def run(
        self,
        value: Annotated[float, Input("The number.")],
        factor: Annotated[float, Input("Multiplier.", min=0.0, max=10.0)] = 2.0,
    ) -> float:
        CALLS.append(("Scale", (value, factor)))
        return value * factor


class ShowNumber(Node):
    """Native output node: shows a FLOAT."""

    category = "test"
    output_node = True

    def run(self, value: Annotated[float, Input("The number to show.")]) -> Ui:
        CALLS.append(("ShowNumber", value))
        return Ui(numbers=[value])


class Volatile:
    """ComfyUI convention: IS_CHANGED returns NaN, so it always runs."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("FLOAT", {"default": 1.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "test"

    @classmethod
    def IS_CHANGED(cls, value: float) -> float:
        return math.nan

    def go(self, value: float) -> tuple[float]:
        CALLS.append(("Volatile", value))
        return (value,)


class Explode:
    """ComfyUI convention: raises."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("FLOAT", {"default": 1.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "test"

    def go(self, value: float) -> tuple[float]:
        CALLS.append(("Explode", value))
        raise ValueError(f"cannot handle {value}")


class SlowSteps(Node):
    """Native: reports progress for each of `steps` steps; a test interrupts it mid-way."""

    category = "test"

    def run(self, ctx: Context, steps: Annotated[int, Input("Steps.", min=1, max=1000)] = 5) -> float:
        for step in range(steps):
            CALLS.append(("SlowSteps", step))
            if step == 2 and ON_STEP_2:
                ON_STEP_2[0]()
            ctx.progress(step + 1, steps)
        return float(steps)


ON_STEP_2: list[Any] = []


class EvenOnly:
    """ComfyUI convention with VALIDATE_INPUTS."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 2, "min": 0, "max": 10})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "go"
    CATEGORY = "test"

    @classmethod
    def VALIDATE_INPUTS(cls, value: int) -> bool | str:
        return True if value % 2 == 0 else f"{value} is odd"

    def go(self, value: int) -> tuple[int]:
        return (value,)


class ListMaker:
    """ComfyUI convention with OUTPUT_IS_LIST: emits 0..count-1 as separate items."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 100})}}

    RETURN_TYPES = ("FLOAT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "go"
    CATEGORY = "test"

    def go(self, count: int) -> tuple[list[float]]:
        return ([float(i) for i in range(count)],)


class SumList:
    """ComfyUI convention with INPUT_IS_LIST: receives the whole list."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"values": ("FLOAT", {"forceInput": True})}}

    INPUT_IS_LIST = True
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "test"

    def go(self, values: list[float]) -> tuple[float]:
        return (sum(values),)


class ShowAnything:
    """ComfyUI convention output node taking any type ("*")."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ()
    FUNCTION = "go"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def go(self, value: Any) -> dict[str, Any]:
        CALLS.append(("ShowAnything", value))
        return {"ui": {"values": [repr(value)]}}


NODE_CLASS_MAPPINGS = {
    "ShowAnything": ShowAnything,
    "AddNumbers": AddNumbers,
    "Volatile": Volatile,
    "Explode": Explode,
    "EvenOnly": EvenOnly,
    "ListMaker": ListMaker,
    "SumList": SumList,
}
NODE_DISPLAY_NAME_MAPPINGS = {"AddNumbers": "Add Numbers"}
