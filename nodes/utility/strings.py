"""ComfyUI's string nodes (utils/string): concatenate, replace, substring, length, compare, regex."""

from __future__ import annotations

import re
from typing import Annotated

from engine.native import Input, Node, Output

TEXT = Input("The text.", multiline=True)
COMPARE_MODES = ("Starts With", "Ends With", "Equal")
EXTRACT_MODES = ("First Match", "All Matches", "First Group", "All Groups")


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    return (
        (re.IGNORECASE if case_insensitive else 0)
        | (re.MULTILINE if multiline else 0)
        | (re.DOTALL if dotall else 0)
    )


class StringConcatenate(Node):
    """string_a + delimiter + string_b."""

    display_name = "Concatenate"
    category = "utils/string"

    def run(
        self,
        *,
        string_a: Annotated[str, Input("The first text.", multiline=True)],
        string_b: Annotated[str, Input("The second text.", multiline=True)],
        delimiter: Annotated[str, Input("Put between the two.", extra={"multiline": False})] = "",
    ) -> str:
        return delimiter.join((string_a, string_b))


class StringReplace(Node):
    """Replace every occurrence of `find` by `replace`."""

    display_name = "Replace"
    category = "utils/string"

    def run(
        self,
        *,
        string: Annotated[str, TEXT],
        find: Annotated[str, Input("The text to find.", multiline=True)],
        replace: Annotated[str, Input("What to put instead.", multiline=True)],
    ) -> str:
        return string.replace(find, replace)


class StringSubstring(Node):
    """string[start:end], Python's slice (negative positions count from the end)."""

    display_name = "Substring"
    category = "utils/string"

    def run(
        self,
        *,
        string: Annotated[str, TEXT],
        start: Annotated[int, Input("First character (0-based).")],
        end: Annotated[int, Input("One past the last character.")],
    ) -> str:
        return string[start:end]


class StringLength(Node):
    """Number of characters."""

    display_name = "Length"
    category = "utils/string"

    def run(self, string: Annotated[str, TEXT]) -> Annotated[int, Output("length")]:
        return len(string)


class StringCompare(Node):
    """Whether string_a starts with, ends with or equals string_b."""

    display_name = "Compare"
    category = "utils/string"

    def run(
        self,
        *,
        string_a: Annotated[str, Input("The text examined.", multiline=True)],
        string_b: Annotated[str, Input("The text looked for.", multiline=True)],
        mode: Annotated[str, Input("The comparison.", choices=COMPARE_MODES)],
        case_sensitive: Annotated[bool, Input("Upper and lower case differ.")] = True,
    ) -> bool:
        a, b = (string_a, string_b) if case_sensitive else (string_a.lower(), string_b.lower())
        if mode == "Equal":
            return a == b
        return a.startswith(b) if mode == "Starts With" else a.endswith(b)


class RegexMatch(Node):
    """Whether the pattern matches anywhere in the text (an invalid pattern does not match)."""

    display_name = "Regex Match"
    category = "utils/string"

    def run(
        self,
        *,
        string: Annotated[str, TEXT],
        regex_pattern: Annotated[str, Input("A Python regular expression.", multiline=True)],
        case_insensitive: Annotated[bool, Input("Ignore case.")] = True,
        multiline: Annotated[bool, Input("^ and $ match at every line.")] = False,
        dotall: Annotated[bool, Input(". matches newlines too.")] = False,
    ) -> Annotated[bool, Output("matches")]:
        try:
            return re.search(regex_pattern, string, _flags(case_insensitive, multiline, dotall)) is not None
        except re.error:
            return False


class RegexExtract(Node):
    """The first match, all matches, a group of the first match or that group of every match, joined by
    newlines; empty when nothing matches or the pattern is invalid."""

    display_name = "Regex Extract"
    category = "utils/string"

    def run(
        self,
        *,
        string: Annotated[str, TEXT],
        regex_pattern: Annotated[str, Input("A Python regular expression.", multiline=True)],
        mode: Annotated[str, Input("What to extract.", choices=EXTRACT_MODES)],
        case_insensitive: Annotated[bool, Input("Ignore case.")] = True,
        multiline: Annotated[bool, Input("^ and $ match at every line.")] = False,
        dotall: Annotated[bool, Input(". matches newlines too.")] = False,
        group_index: Annotated[int, Input("The group for the group modes.", min=0, max=100)] = 1,
    ) -> str:
        flags = _flags(case_insensitive, multiline, dotall)
        try:
            return _extract(string, regex_pattern, mode, flags, group_index)
        except re.error:
            return ""


def _extract(string: str, pattern: str, mode: str, flags: int, group: int) -> str:
    if mode == "First Match":
        match = re.search(pattern, string, flags)
        return match.group(0) if match else ""
    if mode == "All Matches":
        found = re.findall(pattern, string, flags)
        return "\n".join(item[0] if isinstance(item, tuple) else item for item in found)
    if mode == "First Group":
        match = re.search(pattern, string, flags)
        return match.group(group) or "" if match and len(match.groups()) >= group else ""
    if mode == "All Groups":
        matches = re.finditer(pattern, string, flags)
        return "\n".join(m.group(group) or "" for m in matches if m.groups() and len(m.groups()) >= group)
    return ""
