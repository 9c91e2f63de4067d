"""How many CPU threads torch may use for one piece of work (a sampling run, a VAE pass).

torch's default (one intra-op thread per core) thrashes on shared machines: with one CPU-bound neighbour
on 2 cores, 2 threads run a small UNet 3-4x slower than 1, and a tiny model spends most of each step
synchronising threads even when the cores are idle. The policy gives small work one thread, and large
work as many threads as there are cores nobody else is using (sampled just before the work).
`--threads N` overrides it.

`choose_threads` is the pure decision; `limited(work)` applies it around a block of torch work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Work is measured as parameters × spatial positions processed (batch × height × width of the input).
# Below SMALL_WORK one thread is best even on idle cores; each further thread needs PER_THREAD_WORK of
# it to pay for its synchronisation. Set from two points measured with bench/threads_bench.py: the
# shipped model at 64² (2.7e8: 1 thread beats 2 even on idle cores) and the SD1.5-layout file at 128²
# (3.8e10: 2 threads beat 1 when a core is free). Between them the boundary is a guess.
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
    """The process's policy: an optional fixed count, else `choose_threads` from how busy the cores are."""

    override: int | None = None
    # How long to watch the cores when there is no recent reading. The load average lags by a minute
    # (it said 4 on 2 cores while 2 threads ran faster than 1), so the cores' busy time is read instead.
    sample_seconds: float = 0.05
    # A reading taken at most this long ago is the start of the window: other processes' CPU time since
    # then (the system's busy time minus this process's own) says how busy they are, without waiting.
    recent_seconds: float = 5.0
    _last: tuple[float, float, float] | None = field(default=None, repr=False)

    def busy_elsewhere(self) -> float:
        """Cores in use by other processes: their share of the system's busy time since a recent reading
        (the previous decision's), or over `sample_seconds` spent waiting when there is none."""
        first = self._last
        now = _cpu_reading()
        if now is None:
            try:
                return os.getloadavg()[0]
            except OSError:  # neither is available: assume the machine is ours
                return 0.0
        if first is None or not 0.02 <= now[0] - first[0] <= self.recent_seconds:
            first = now
            time.sleep(self.sample_seconds)  # this process idles, so all busy time is someone else's
            now = _cpu_reading() or now
        self._last = now
        wall, system, own = (b - a for a, b in zip(first, now, strict=True))
        return max(0.0, system - own) / wall if wall > 0 else 0.0

    def threads_for(self, work: float) -> int:
        cores = os.cpu_count() or 1
        idle_choice = choose_threads(work, cores, 0.0, self.override)
        if self.override is not None or idle_choice == 1:
            return idle_choice  # one thread even on idle cores: no need to watch them
        return choose_threads(work, cores, self.busy_elsewhere())


def _cpu_reading() -> tuple[float, float, float] | None:
    """(wall clock, the system's busy CPU seconds, this process's CPU seconds), or None without psutil."""
    try:
        import psutil

        times = psutil.cpu_times()
    except (ImportError, OSError):
        return None
    idle = times.idle + getattr(times, "iowait", 0.0)
    busy = sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    own = os.times()
    return time.monotonic(), busy, own.user + own.system


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
