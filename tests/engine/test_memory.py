"""Heap trimming after long prompts: skipped for short ones, done (where glibc has it) for long ones."""

from __future__ import annotations

import ctypes
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


def test_a_user_set_allocator_policy_is_left_alone() -> None:
    assert memory.user_tuned_malloc({"MALLOC_MMAP_MAX_": "65536"})
    assert memory.user_tuned_malloc({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
    assert not memory.user_tuned_malloc({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2", "PATH": "/bin"})


_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _Mallinfo2(ctypes.Structure):
    _fields_ = tuple((name, ctypes.c_size_t) for name in _MALLINFO2.split())


def test_large_tensors_come_from_the_heap_and_go_back_after_a_prompt() -> None:
    libc = memory._libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc 2.33 or later")
    libc.mallinfo2.restype = _Mallinfo2
    if not memory.reuse_freed():
        pytest.skip("the environment sets glibc's allocator policy")
    import torch

    mapped_before = libc.mallinfo2().hblkhd
    block = torch.ones(48 * 2**20 // 4)  # 48 MB: above glibc's largest automatic mmap threshold
    assert libc.mallinfo2().hblkhd == mapped_before  # not a fresh mmap
    del block
    free_before_trim = libc.mallinfo2().fordblks
    assert free_before_trim >= 48 * 2**20  # kept for the next activation of that size
    assert memory.release_freed(0.0) is True
    assert libc.mallinfo2().keepcost < 48 * 2**20  # the free top of the heap went back to the OS
