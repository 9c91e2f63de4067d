"""Text and number helpers, as native Loom nodes."""

from __future__ import annotations

import re
from typing import Annotated

from engine.native import Input, Node


class TextJoin(Node):
    """Join up to four texts with a separator; empty texts are left out."""

    category = "toolbox/text"

    def run(
        self,
        first: Annotated[str, Input("First text.", force_input=True)],
        second: Annotated[str | None, Input("Second text.", force_input=True)] = None,
        third: Annotated[str | None, Input("Third text.", force_input=True)] = None,
        fourth: Annotated[str | None, Input("Fourth text.", force_input=True)] = None,
        separator: Annotated[str, Input("Put between the texts.")] = ", ",
    ) -> str:
        return separator.join(t for t in (first, second, third, fourth) if t)


class TextReplace(Node):
    """Replace every occurrence of a text (or of a regular expression) with another."""

    category = "toolbox/text"

    def run(
        self,
        text: Annotated[str, Input("The text to change.", multiline=True)],
        find: Annotated[str, Input("What to look for.")] = "",
        replace: Annotated[str, Input("What to put instead.")] = "",
        regex: Annotated[bool, Input("Treat `find` as a regular expression.")] = False,
    ) -> str:
        if not find:
            return text
        return re.sub(find, replace, text) if regex else text.replace(find, replace)

    @classmethod
    def validate(cls, find: str = "", regex: bool = False) -> bool | str:
        if regex:
            try:
                re.compile(find)
            except re.error as exc:
                return f"`find` is not a valid regular expression: {exc}"
        return True


class NumberFormat(Node):
    """A number as text, with a Python format spec (".2f", "05d", ",")."""

    category = "toolbox/text"

    def run(
        self,
        value: Annotated[float, Input("The number.", force_input=True)],
        spec: Annotated[str, Input("Format spec, as in f'{value:spec}'.")] = ".2f",
    ) -> str:
        number = int(value) if spec.endswith(("d", "x", "b", "o")) else value
        return format(number, spec)

    @classmethod
    def validate(cls, spec: str = ".2f") -> bool | str:
        try:
            format(1.5 if not spec.endswith(("d", "x", "b", "o")) else 1, spec)
        except ValueError as exc:
            return f"invalid format spec {spec!r}: {exc}"
        return True
