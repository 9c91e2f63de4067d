"""The oversized graphs of issue 15, shared by the tests and bench/attack_bench.py."""

from __future__ import annotations

from typing import Any


def cycle(size: int) -> dict[str, Any]:
    """`size` Scale nodes linked in a ring, and an output reading one of them."""
    prompt: dict[str, Any] = {
        str(i): {"class_type": "Scale", "inputs": {"value": [str((i + 1) % size), 0], "factor": 1.0}}
        for i in range(size)
    }
    prompt["out"] = {"class_type": "ShowNumber", "inputs": {"value": ["0", 0]}}
    return prompt


def invalid_chain(size: int) -> dict[str, Any]:
    """A chain of `size` Scale nodes whose every factor is over its maximum, then an output."""
    prompt: dict[str, Any] = {"0": {"class_type": "Scale", "inputs": {"value": 1.0, "factor": 99.0}}}
    for i in range(1, size):
        prompt[str(i)] = {"class_type": "Scale", "inputs": {"value": [str(i - 1), 0], "factor": 99.0}}
    prompt["out"] = {"class_type": "ShowNumber", "inputs": {"value": [str(size - 1), 0]}}
    return prompt
