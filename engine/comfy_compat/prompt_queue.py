"""`PromptServer.instance.prompt_queue`: ComfyUI's PromptQueue methods over Loom's durable queue
(`engine.queue.PromptStore`) and its worker. Items are ComfyUI's queue lists
`[number, prompt_id, prompt, extra_data, outputs_to_execute]`. Before the server binds it (while
packs import, or with no server at all) the queue is empty and accepts nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class PromptQueue:
    def __init__(self) -> None:
        self.store: Any = None
        self.worker: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.flags: dict[str, Any] = {}

    def bind(self, store: Any, worker: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.worker, self.loop = store, worker, loop

    def _changed(self) -> None:
        """Wake the worker and tell clients the queue length (on the server's loop, from any thread)."""
        if self.worker is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.worker.queue_changed)

    def _need_store(self) -> Any:
        if self.store is None:
            raise RuntimeError("Loom's server is not running: the prompt queue is not available")
        return self.store

    def put(self, item: Any) -> None:
        number, prompt_id, prompt, extra_data, outputs = list(item)[:5]
        self._need_store().add(prompt_id, prompt, extra_data or {}, list(outputs), number=number)
        self._changed()

    def get_current_queue(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """(running, pending) as ComfyUI's queue lists."""
        if self.store is None:
            return [], []
        running, pending = self.store.queue()
        return [i.as_list() for i in running], [i.as_list() for i in pending]

    get_current_queue_volatile = get_current_queue

    def get_tasks_remaining(self) -> int:
        return 0 if self.store is None else int(self.store.remaining())

    def wipe_queue(self) -> None:
        if self.store is not None:
            self.store.clear_pending()
            self._changed()

    def delete_queue_item(self, function: Callable[[list[Any]], bool]) -> bool:
        """Delete the first pending item for which `function(item)` is true."""
        for item in self.get_current_queue()[1]:
            if function(item):
                deleted = bool(self._need_store().delete_pending([item[1]]))
                self._changed()
                return deleted
        return False

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1,
        map_function: Callable[[dict[str, Any]], Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        if self.store is None:
            return {}
        if prompt_id is not None:
            entry = self.store.history_entry(prompt_id)
            found = {} if entry is None else {prompt_id: entry}
        else:
            found = self.store.history(max_items, offset)
        return {k: map_function(v) for k, v in found.items()} if map_function else found

    def wipe_history(self) -> None:
        if self.store is not None:
            self.store.clear_history()

    def delete_history_item(self, id_to_delete: str) -> None:
        if self.store is not None:
            self.store.delete_history([id_to_delete])

    def set_flag(self, name: str, data: Any) -> None:
        """ComfyUI's "free_memory" / "unload_models" requests: Loom frees its output cache."""
        self.flags[name] = data
        if name in ("free_memory", "unload_models") and data and self.worker is not None and self.loop:
            self.loop.call_soon_threadsafe(self.worker.free_cache)

    def get_flags(self, reset: bool = True) -> dict[str, Any]:
        flags = dict(self.flags)
        if reset:
            self.flags.clear()
        return flags
