"""The thread policy: its choice for given work sizes, core counts and loads, and how it is applied."""

from __future__ import annotations

import pytest
import torch

from engine import threads
from engine.threads import PER_THREAD_WORK, SMALL_WORK, choose_threads, work_of


@pytest.mark.parametrize(
    ("work", "cores", "busy", "expected"),
    [
        (1e6, 2, 0.0, 1),  # a tiny model: one thread even on idle cores
        (SMALL_WORK / 2, 16, 0.0, 1),
        (50 * PER_THREAD_WORK, 2, 0.0, 2),  # a large model on idle cores: all of them
        (50 * PER_THREAD_WORK, 2, 1.0, 1),  # a CPU-bound neighbour on one of two cores
        (50 * PER_THREAD_WORK, 2, 10.0, 1),  # an overloaded machine: never fewer than one
        (50 * PER_THREAD_WORK, 16, 4.2, 12),  # only the cores others leave free
        (2.5 * PER_THREAD_WORK, 16, 0.0, 3),  # medium work: threads it can keep busy
        (50 * PER_THREAD_WORK, 1, 0.0, 1),
    ],
)
def test_choice_for_size_and_load(work: float, cores: int, busy: float, expected: int) -> None:
    assert choose_threads(work, cores, busy) == expected


def test_override_wins() -> None:
    assert choose_threads(1e6, 2, 0.0, override=4) == 4
    assert choose_threads(1e15, 2, 9.0, override=1) == 1


def test_work_counts_parameters_times_positions() -> None:
    layer = torch.nn.Linear(3, 5)  # 20 parameters
    assert work_of(layer, 64) == 20 * 64

    class Patcher:  # a wrapper holding the module as `.model`
        model = layer

    assert work_of(Patcher(), 2) == 40


def test_limited_sets_and_restores_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        threads.configure(3)
        with threads.limited(1.0) as chosen:
            assert chosen == 3 and torch.get_num_threads() == 3
        assert torch.get_num_threads() == before
        threads.configure(None)
        with threads.limited(1.0) as chosen:
            assert chosen == 1 and torch.get_num_threads() == 1  # tiny work
    finally:
        threads.configure(None)
        torch.set_num_threads(before)


def test_configure_rejects_fewer_than_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        threads.configure(0)


def test_busy_elsewhere_counts_other_processes_since_the_last_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (wall clock, system busy CPU seconds, this process's CPU seconds)
    readings = iter([(10.0, 100.0, 5.0), (12.0, 104.0, 7.0)])
    monkeypatch.setattr(threads, "_cpu_reading", lambda: next(readings))
    slept: list[float] = []
    monkeypatch.setattr(threads.time, "sleep", slept.append)
    policy = threads.ThreadPolicy(sample_seconds=0.05)
    policy._last = (9.0, 99.0, 5.0)  # a reading 1 s before: no waiting; 1 busy s in 1 s, none of it ours
    assert policy.busy_elsewhere() == pytest.approx(1.0)
    assert policy.busy_elsewhere() == pytest.approx((4.0 - 2.0) / 2.0)  # 4 busy s in 2 s, 2 of them ours
    assert slept == []


def test_busy_elsewhere_watches_the_cores_without_a_recent_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([(100.0, 50.0, 1.0), (100.05, 50.05, 1.0)])
    monkeypatch.setattr(threads, "_cpu_reading", lambda: next(readings))
    slept: list[float] = []
    monkeypatch.setattr(threads.time, "sleep", slept.append)
    policy = threads.ThreadPolicy(sample_seconds=0.05)
    policy._last = (0.0, 0.0, 0.0)  # long ago: stale
    assert policy.busy_elsewhere() == pytest.approx(1.0)
    assert slept == [0.05]
