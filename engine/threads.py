"""How many CPU threads torch may use for one piece of work (a sampling run, a VAE pass).

torch's default (one intra-op thread per core) thrashes on shared machines: with one CPU-bound neighbour
on 2 cores, 2 threads run a small UNet 3-4x slower than 1, and a tiny model spends most of each step
synchronising threads even when the cores are idle. The policy gives small work one thread, and large
work as many threads as there are cores nobody else is using. `--threads N` overrides it.

`choose_threads` is the pure decision; `limited(work)` applies it around a block of torch work.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Work is measured as parameters × spatial positions processed (batch × height × width of the input).
# Below SMALL_WORK one thread is best even on idle cores; each further thread needs PER_THREAD_WORK of
# it to pay for its synchronisation. Calibrated with bench/threads_bench.py (see docs/models.md).
SMALL_WORK = 2e9
PER_THREAD_WORK = 1e10
# Cores count as free only when at least this much of one is idle: a half-busy core still preempts.
FREE_CORE_MARGIN = 0.5


def choose_threads(work: float, cores: int, busy_elsewhere: float, override: int | None = None) -> int:
    """Threads for `work` on `cores` cores of which `busy_elsewhere` (a load, in cores) other processes use.

    An override wins. Small work gets one thread; larger work one thread per `PER_THREAD_WORK`, capped
    by the cores that are free, and never fewer than one.
    """
    if override is not None:
        return max(1, override)
    if work < SMALL_WORK or cores <= 1:
        return 1
    free = int(cores - max(0.0, busy_elsewhere) + (1 - FREE_CORE_MARGIN))
    wanted = int(work // PER_THREAD_WORK) + 1
    return max(1, min(cores, free, wanted))


def work_of(module: Any, positions: int) -> float:
    """The work of running `module` over `positions` spatial positions (batch × height × width).

    `module` is a torch module or a wrapper holding one as `.model` (a model patcher).
    """
    if not hasattr(module, "parameters") and hasattr(module, "model"):
        module = module.model
    return float(sum(p.numel() for p in module.parameters())) * positions


@dataclass
class ThreadPolicy:
    """The process's policy: an optional fixed count, else `choose_threads` from the machine's load."""

    override: int | None = None

    def __post_init__(self) -> None:
        self._cpu_mark = (time.monotonic(), time.process_time())
        self._lock = threading.Lock()

    def busy_elsewhere(self) -> float:
        """Cores in use by other processes: the 1-minute load average less this process's own recent use."""
        try:
            load = os.getloadavg()[0]
        except OSError:  # not on this platform: assume the machine is ours
            return 0.0
        with self._lock:
            now = (time.monotonic(), time.process_time())
            wall, cpu = now[0] - self._cpu_mark[0], now[1] - self._cpu_mark[1]
            self._cpu_mark = now
        own = cpu / wall if wall > 1.0 else 0.0
        return max(0.0, load - own)

    def threads_for(self, work: float) -> int:
        if self.override is not None:
            return choose_threads(work, 1, 0.0, self.override)
        return choose_threads(work, os.cpu_count() or 1, self.busy_elsewhere())


_policy = ThreadPolicy()


def configure(override: int | None) -> ThreadPolicy:
    """Set the process's policy (`--threads N`; None restores the automatic choice)."""
    global _policy
    if override is not None and override < 1:
        raise ValueError(f"--threads must be at least 1, got {override}")
    _policy = ThreadPolicy(override)
    return _policy


def policy() -> ThreadPolicy:
    return _policy


@contextmanager
def limited(work: float) -> Iterator[int]:
    """Run the block with the policy's thread count for `work`, restoring the previous count after.

    torch's thread count belongs to the calling thread's OpenMP state, so set and use it on one thread.
    """
    import torch

    before = torch.get_num_threads()
    chosen = _policy.threads_for(work)
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)
