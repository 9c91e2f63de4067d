"""ComfyUI's `execution` module as far as packs use it from outside a prompt: validating a prompt,
running one, and the names they compare against. Both run on Loom's validator and executor."""

from __future__ import annotations

from enum import Enum
from typing import Any

from engine.graph import validate_prompt as loom_validate_prompt


class ExecutionResult(Enum):
    SUCCESS = 0
    FAILURE = 1
    PENDING = 2


class DuplicateNodeError(Exception):
    pass


def _registry() -> Any:
    from engine.comfy_compat.prompt_server import PromptServer

    registry = PromptServer.instance.registry
    if registry is None:
        from nodes import builtin_registry

        registry = builtin_registry()
    return registry


async def validate_prompt(
    prompt_id: str, prompt: dict[str, Any], partial_execution_list: list[str] | None = None
) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    """ComfyUI's answer: (valid, error, output node ids to run, node_errors)."""
    checked = loom_validate_prompt(_registry(), prompt, partial_execution_list)
    return checked.ok, checked.error, list(checked.outputs), checked.node_errors


class PromptExecutor:
    """Runs prompts in this process on Loom's executor (its own cache), reporting events to `server`'s
    `send_sync` as ComfyUI's does."""

    def __init__(self, server: Any = None, cache_type: Any = False, cache_size: int | None = None) -> None:
        from engine.executor import Executor

        self.server = server
        self.executor = Executor(_registry())
        self.success = True
        self.history_result: dict[str, Any] = {}
        self.status_messages: list[tuple[str, dict[str, Any]]] = []

    def reset(self) -> None:
        self.executor.cache.clear()

    def add_message(self, event: str, data: dict[str, Any], broadcast: bool) -> None:
        self.status_messages.append((event, data))
        if self.server is not None and hasattr(self.server, "send_sync"):
            self.server.send_sync(event, data, None if broadcast else getattr(self.server, "client_id", None))

    def handle_execution_error(
        self, prompt_id: str, prompt: dict[str, Any], current_outputs: Any, executed: Any,
        error: dict[str, Any], ex: BaseException,
    ) -> None:  # fmt: skip
        """Report a node's failure as ComfyUI does: `execution_interrupted` (broadcast) for an
        interrupt, else `execution_error` with the error's message, type, traceback and inputs.
        Loom's own server reports failures itself; this serves packs that call it (or wrap it)."""
        from engine.context import Interrupted

        node_id = error["node_id"]
        base = {
            "prompt_id": prompt_id,
            "node_id": node_id,
            "node_type": prompt[node_id]["class_type"],
            "executed": list(executed),
        }
        if isinstance(ex, Interrupted):
            self.add_message("execution_interrupted", base, True)
            return
        details = ("exception_message", "exception_type", "traceback", "current_inputs")
        data = {**base, **{key: error.get(key) for key in details}, "current_outputs": list(current_outputs)}
        self.add_message("execution_error", data, False)

    def execute(
        self, prompt: dict[str, Any], prompt_id: str, extra_data: dict[str, Any] | None = None,
        execute_outputs: list[str] | None = None,
    ) -> None:  # fmt: skip
        checked = loom_validate_prompt(self.executor.registry, prompt, execute_outputs or None)
        if not checked.ok:
            self.success = False
            self.add_message("execution_error", {"prompt_id": prompt_id, **(checked.error or {})}, False)
            return
        result = self.executor.execute(
            checked.prompt,
            prompt_id,
            checked.outputs,
            extra_data or {},
            lambda e, d: self.add_message(e, d, False),
        )
        self.success = result.status == "success"
        self.history_result = {"outputs": result.outputs, "meta": result.meta}
