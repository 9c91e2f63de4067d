"""Which node runs next: a topological schedule that grows and re-blocks while the prompt runs.

Adding a node adds the nodes its non-lazy inputs read from (unless their value is already known) and
blocks it on them. A lazy input becomes a dependency only when the node asks for it; expansion adds
new nodes and blocks the expanding node on the outputs it returned. Among ready nodes the choice is
deterministic: output nodes first (their results show up sooner), then by node id.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


def natural_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


class ExecutionList:
    def __init__(
        self,
        links: Callable[[str], list[tuple[str, str, int]]],
        resolved: Callable[[str], bool],
        lazy_inputs: Callable[[str], frozenset[str]],
        is_output: Callable[[str], bool],
    ) -> None:
        self._links = links
        self._resolved = resolved
        self._lazy_inputs = lazy_inputs
        self._is_output = is_output
        self.pending: set[str] = set()
        self._block_count: dict[str, int] = {}
        # source node -> nodes it blocks
        self._blocking: dict[str, set[str]] = {}
        self._heap: list[tuple[tuple[bool, tuple[int, str]], str]] = []
        self._queued: set[str] = set()

    def add_node(self, node_id: str) -> None:
        """Schedule a node and, transitively, whatever its non-lazy inputs need."""
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in self.pending:
                continue
            self.pending.add(current)
            self._block_count.setdefault(current, 0)
            lazy = self._lazy_inputs(current)
            for name, source, _ in self._links(current):
                if name not in lazy and self._block(source, current):
                    stack.append(source)
            self._queue_if_ready(current)

    def add_strong_link(self, source: str, consumer: str) -> bool:
        """Make `consumer` wait for `source` (scheduling it if needed); False if its value is known."""
        if self._block(source, consumer):
            self.add_node(source)
        return self._block_count.get(consumer, 0) > 0

    def make_input_strong_link(self, node_id: str, input_name: str) -> bool:
        """A lazy input the node asked for becomes a dependency. False if there is nothing to wait for."""
        source = next((s for name, s, _ in self._links(node_id) if name == input_name), None)
        return source is not None and self.add_strong_link(source, node_id)

    def pop_ready(self) -> str | None:
        while self._heap:
            _, node_id = heapq.heappop(self._heap)
            if node_id in self._queued:
                self._queued.discard(node_id)
                return node_id
        return None

    def requeue(self, node_id: str) -> None:
        """Stage a node again once nothing blocks it (after it asked for inputs or expanded)."""
        self._queue_if_ready(node_id)

    def complete(self, node_id: str) -> None:
        self.pending.discard(node_id)
        self._queued.discard(node_id)
        for consumer in self._blocking.pop(node_id, ()):
            self._block_count[consumer] -= 1
            self._queue_if_ready(consumer)

    def nodes_in_cycle(self) -> list[str]:
        """Pending nodes that wait on each other: peel off those that block no pending node."""
        remaining = set(self.pending)
        changed = True
        while changed:
            changed = False
            for node_id in list(remaining):
                if not self._blocking.get(node_id, set()) & remaining:
                    remaining.discard(node_id)
                    changed = True
        return sorted(remaining, key=natural_key)

    def _block(self, source: str, consumer: str) -> bool:
        """Record that `consumer` waits on `source`; True if `source` still has to be scheduled."""
        if self._resolved(source):
            return False
        blocked = self._blocking.setdefault(source, set())
        if consumer not in blocked:
            blocked.add(consumer)
            self._block_count[consumer] = self._block_count.get(consumer, 0) + 1
            self._queued.discard(consumer)
        return source not in self.pending

    def _queue_if_ready(self, node_id: str) -> None:
        if node_id in self.pending and self._block_count.get(node_id, 0) == 0 and node_id not in self._queued:
            self._queued.add(node_id)
            priority: Any = (not self._is_output(node_id), natural_key(node_id))
            heapq.heappush(self._heap, (priority, node_id))
