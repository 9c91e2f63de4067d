"""ComfyUI's `progress_state` messages and the preview method a prompt runs with.

ComfyUI (comfy_execution/progress.py) keeps a state per node of the running prompt (pending,
running, finished, error, with value and max) and sends every non-pending node's state, to the
prompt's client only, each time a node starts, reports progress or finishes. Loom derives the same
states from the executor's events: a node runs from its `executing` until the next node's (nodes
run one at a time), reports through `progress`, and is finished when cached, executed or passed.
"""

from __future__ import annotations

from typing import Any

from engine.server.config import PREVIEW_METHODS


def preview_method(extra_data: dict[str, Any], server_default: str) -> str:
    """The prompt's `extra_data.preview_method` when it names one (ComfyUI's "default" and anything
    unknown mean the server's --preview-method)."""
    wanted = extra_data.get("preview_method")
    return wanted if isinstance(wanted, str) and wanted in PREVIEW_METHODS else server_default


def resolve_preview_method(method: str) -> str:
    """What Loom draws for a method: auto is latent2rgb (as in ComfyUI); taesd stays taesd (the
    sampler falls back to latent2rgb when the family's decoder is not in vae_approx)."""
    return "latent2rgb" if method == "auto" else method


class ProgressState:
    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.nodes: dict[str, dict[str, Any]] = {}
        self.running: str | None = None
        # Nodes made by expansion show as the node the user sees (`display_node` of `executing`).
        self.display: dict[str, str] = {}

    def update(self, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """The progress_state message this event calls for, or None."""
        if event == "execution_cached":
            for node in data.get("nodes", []):
                self._set(str(node), "finished", 1.0, 1.0)
            return self.message() if data.get("nodes") else None
        if event == "executing":
            node = data.get("node")
            if node is None or node == self.running:
                return None
            self._finish_running()
            self.running = str(node)
            self.display[self.running] = str(data.get("display_node") or node)
            self._set(self.running, "running", 0.0, 1.0)
            return self.message()
        if event == "progress" and data.get("node") is not None:
            node = str(data["node"])
            self._set(node, "running", float(data.get("value", 0)), float(data.get("max", 1)))
            return self.message()
        if event == "executed" and data.get("node") is not None:
            node = str(data["node"])
            previous = self.nodes.get(node, {}).get("max", 1.0)
            self._set(node, "finished", previous, previous)
            return self.message()
        if event in ("execution_success", "execution_interrupted"):
            return self.message() if self._finish_running() else None
        if event == "execution_error":
            failed = data.get("node_id")
            if failed is not None:
                self._set(str(failed), "error", 0.0, 1.0)
                self.running = None
            return self.message()
        return None

    def _finish_running(self) -> bool:
        node, self.running = self.running, None
        if node is None or self.nodes.get(node, {}).get("state") != "running":
            return False
        done = self.nodes[node]["max"]
        self._set(node, "finished", done, done)
        return True

    def _set(self, node: str, state: str, value: float, maximum: float) -> None:
        self.nodes[node] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node,
            "prompt_id": self.prompt_id,
            "display_node_id": self.display.get(node, node),
            "parent_node_id": None,
            "real_node_id": node,
        }

    def message(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "nodes": {k: dict(v) for k, v in self.nodes.items()}}
