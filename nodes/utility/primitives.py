"""Constant values to wire into other nodes (ComfyUI's PrimitiveInt / Float / String / Boolean)."""

from __future__ import annotations

import sys
from typing import Annotated

from engine.native import Input, Node

# ComfyUI's bounds for both number primitives (no defaults: the front end starts them at 0).
LIMIT = sys.maxsize


class PrimitiveInt(Node):
    """An integer constant."""

    display_name = "Int"
    category = "utils/primitive"

    def run(
        self,
        value: Annotated[int, Input("The integer.", min=-LIMIT, max=LIMIT, control_after_generate=True)],
    ) -> int:
        return value


class PrimitiveFloat(Node):
    """A floating-point constant."""

    display_name = "Float"
    category = "utils/primitive"

    def run(self, value: Annotated[float, Input("The number.", min=-LIMIT, max=LIMIT)]) -> float:
        return value


class PrimitiveString(Node):
    """A single-line text constant."""

    display_name = "String"
    category = "utils/primitive"

    def run(self, value: Annotated[str, Input("The text.", extra={"multiline": False})]) -> str:
        return value


class PrimitiveStringMultiline(Node):
    """A multi-line text constant."""

    display_name = "String (Multiline)"
    category = "utils/primitive"

    def run(self, value: Annotated[str, Input("The text.", multiline=True)]) -> str:
        return value


class PrimitiveBoolean(Node):
    """A true/false constant."""

    display_name = "Boolean"
    category = "utils/primitive"

    def run(self, value: Annotated[bool, Input("The switch.")]) -> bool:
        return value
