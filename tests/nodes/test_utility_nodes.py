"""String, regex and switch nodes through the registry and executor."""

from __future__ import annotations

import pytest

from engine.executor import Executor
from engine.graph import validate_prompt
from tests.nodes.harness import call


def test_concatenate_replace_substring_length(executor: Executor) -> None:
    assert call(executor, "StringConcatenate", string_a="a", string_b="b", delimiter=", ") == ("a, b",)
    assert call(executor, "StringReplace", string="a-b-c", find="-", replace="+") == ("a+b+c",)
    assert call(executor, "StringSubstring", string="abcdef", start=1, end=-1) == ("bcde",)
    assert call(executor, "StringLength", string="héllo") == (5,)


@pytest.mark.parametrize(
    ("mode", "case_sensitive", "expected"),
    [
        ("Starts With", True, False),
        ("Starts With", False, True),
        ("Ends With", True, True),
        ("Equal", False, False),
    ],
)
def test_compare(executor: Executor, mode: str, case_sensitive: bool, expected: bool) -> None:
    out = call(
        executor,
        "StringCompare",
        string_a="Hello world",
        string_b="hello" if mode != "Ends With" else "world",
        mode=mode,
        case_sensitive=case_sensitive,
    )
    assert out == (expected,)


def test_regex_match(executor: Executor) -> None:
    def match(pattern: str, **flags: bool) -> bool:
        options = {"case_insensitive": True, "multiline": False, "dotall": False} | flags
        return call(executor, "RegexMatch", string="One\ntwo", regex_pattern=pattern, **options)[0]

    assert match("one") and not match("one", case_insensitive=False)
    assert match("^two", multiline=True) and not match("^two")
    assert match("One.two", dotall=True) and not match("One.two")
    assert not match("(unclosed")  # an invalid pattern does not match


@pytest.mark.parametrize(
    ("mode", "group", "expected"),
    [
        ("First Match", 1, "a1"),
        ("All Matches", 1, "a\nb"),  # findall with groups gives each match's first group
        ("First Group", 2, "1"),
        ("All Groups", 2, "1\n2"),
        ("First Group", 3, ""),  # no such group
    ],
)
def test_regex_extract(executor: Executor, mode: str, group: int, expected: str) -> None:
    out = call(
        executor,
        "RegexExtract",
        string="a1 b2",
        regex_pattern=r"([a-z])(\d)",
        mode=mode,
        case_insensitive=True,
        multiline=False,
        dotall=False,
        group_index=group,
    )
    assert out == (expected,)


def test_switch_computes_only_the_chosen_branch(executor: Executor) -> None:
    prompt = {
        "t": {"class_type": "PrimitiveString", "inputs": {"value": "yes"}},
        "f": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": "n", "string_b": "o", "delimiter": ""},
        },
        "s": {
            "class_type": "ComfySwitchNode",
            "inputs": {"switch": True, "on_true": ["t", 0], "on_false": ["f", 0]},
        },
        "p": {"class_type": "PreviewAny", "inputs": {"source": ["s", 0]}},
    }
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "p1", checked.outputs)
    assert result.outputs["p"] == {"text": ["yes"]} and "f" not in result.executed
    prompt["s"]["inputs"]["switch"] = False
    checked = validate_prompt(executor.registry, prompt)
    result = executor.execute(checked.prompt, "p2", checked.outputs)
    assert result.outputs["p"] == {"text": ["no"]} and "f" in result.executed


def test_switch_with_an_unconnected_branch_gives_none(executor: Executor) -> None:
    assert call(executor, "ComfySwitchNode", switch=False, on_true="x") == (None,)
