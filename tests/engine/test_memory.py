"""Heap trimming after long prompts: skipped for short ones, done (where glibc has it) for long ones."""

from __future__ import annotations

import time

import pytest

from engine import memory


def test_short_prompts_are_not_followed_by_a_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    monkeypatch.setattr(memory, "_libc", lambda: Libc())
    assert memory.release_freed(time.monotonic()) is False
    assert calls == []
    assert memory.release_freed(time.monotonic() - memory.MIN_PROMPT_SECONDS - 1) is True
    assert calls == [0]


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert memory.release_freed(0.0) is False
