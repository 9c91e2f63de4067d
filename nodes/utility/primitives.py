"""Constant values to wire into other nodes (ComfyUI's PrimitiveInt / Float / String / Boolean)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Node

INT_LIMIT = 0xFFFFFFFFFFFFFFFF


class PrimitiveInt(Node):
    """An integer constant."""

    display_name = "Int"
    category = "utils/primitive"

    def run(self, value: Annotated[int, Input("The integer.", min=-INT_LIMIT, max=INT_LIMIT)] = 0) -> int:
        return value


class PrimitiveFloat(Node):
    """A floating-point constant."""

    display_name = "Float"
    category = "utils/primitive"

    def run(self, value: Annotated[float, Input("The number.", min=-1e300, max=1e300)] = 0.0) -> float:
        return value


class PrimitiveString(Node):
    """A single-line text constant."""

    display_name = "String"
    category = "utils/primitive"

    def run(self, value: Annotated[str, Input("The text.")] = "") -> str:
        return value


class PrimitiveStringMultiline(Node):
    """A multi-line text constant."""

    display_name = "String (Multiline)"
    category = "utils/primitive"

    def run(self, value: Annotated[str, Input("The text.", multiline=True)] = "") -> str:
        return value


class PrimitiveBoolean(Node):
    """A true/false constant."""

    display_name = "Boolean"
    category = "utils/primitive"

    def run(self, value: Annotated[bool, Input("The switch.")] = False) -> bool:
        return value
