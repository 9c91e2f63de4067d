"""ComfyUI's `progress_state` message: the state of every node of a running prompt that has started
(running or finished, with its progress value), sent to the client that queued it whenever a node
starts, reports progress or the prompt ends. The official front end draws per-node progress from it.
"""

from __future__ import annotations

from typing import Any


class ProgressState:
    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.nodes: dict[str, dict[str, Any]] = {}
        self._running: str | None = None

    def on_event(self, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """The message to send after this executor event, or None when nothing changed."""
        if event == "executing":
            self._finish_running()
            node = data.get("node")
            if node is None:
                return self.message()
            self._running = str(node)
            self._set(self._running, 0.0, 1.0, "running", data.get("display_node"))
        elif event == "progress":
            node = str(data.get("node"))
            self._running = node
            self._set(node, float(data.get("value", 0)), float(data.get("max", 1)), "running")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            self._finish_running("error" if event == "execution_error" else "finished")
        else:
            return None
        return self.message()

    def message(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "nodes": {k: dict(v) for k, v in self.nodes.items()}}

    def _finish_running(self, state: str = "finished") -> None:
        if self._running is not None and self._running in self.nodes:
            entry = self.nodes[self._running]
            entry["state"] = state
            if state == "finished":
                entry["value"] = entry["max"]
        self._running = None

    def _set(self, node: str, value: float, maximum: float, state: str, display: Any = None) -> None:
        entry = self.nodes.setdefault(
            node,
            {
                "node_id": node,
                "prompt_id": self.prompt_id,
                "display_node_id": str(display or node),
                "parent_node_id": None,
                "real_node_id": node,
            },
        )
        entry.update(value=value, max=maximum, state=state)
