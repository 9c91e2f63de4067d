"""Architecture rules as tests: no blocking file or sleep calls inside the server's async handlers."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "engine" / "server"
BLOCKING = {
    "open",
    "read_bytes",
    "write_bytes",
    "read_text",
    "write_text",
    "sleep",
    "rglob",
    "glob",
    "iterdir",
}


def blocking_calls(function: ast.AsyncFunctionDef) -> list[str]:
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in BLOCKING and not (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "sleep"
                and getattr(node.func.value, "id", "") == "asyncio"
            ):
                found.append(f"{function.name}: {name}() at line {node.lineno}")
    return found


def test_async_handlers_make_no_blocking_calls() -> None:
    problems = []
    for path in SERVER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.AsyncFunctionDef):
                problems += [f"{path.name}: {p}" for p in blocking_calls(node)]
    assert problems == []
