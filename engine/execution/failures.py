"""What a failed node reports: ComfyUI's execution_error fields."""

from __future__ import annotations

import time
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.execution.run import PromptRun


def now_ms() -> int:
    return int(time.time() * 1000)


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)[:200]


# What a node may raise that fails its prompt. SystemExit and KeyboardInterrupt are included: a node
# (or a library it calls) that exits or sees Ctrl-C must not stop the server.
NODE_FAULTS = (Exception, SystemExit, KeyboardInterrupt)


class DependencyCycleError(Exception):
    """Nodes added by expansion wait on each other (static cycles are rejected by validation)."""


class DuplicateNodeError(Exception):
    """An expansion reused the id of a node already in the prompt."""


class NodeFailure(Exception):
    """A node raised or returned something unusable; carries what execution_error reports."""

    def __init__(
        self,
        node_id: str,
        exc: BaseException,
        inputs: dict[str, list[Any]] | None = None,
        exception_type: str | None = None,
    ) -> None:
        super().__init__(str(exc))
        self.node_id, self.exc, self.inputs = node_id, exc, inputs or {}
        self.exception_type = exception_type or type_name(exc)

    def event(self, run: PromptRun) -> dict[str, Any]:
        """The execution_error data, attributed to the submitted node that the failing one came from."""
        exc = self.exc
        real = run.dynprompt.get_real_node_id(self.node_id)
        return {
            "prompt_id": run.prompt_id,
            "node_id": real,
            "node_type": run.prompt[real]["class_type"],
            "executed": list(run.result.executed),
            "exception_message": str(exc) or type(exc).__name__,
            "exception_type": self.exception_type,
            "traceback": traceback.format_tb(exc.__traceback__),
            "current_inputs": {
                name: [format_value(v) for v in values] for name, values in self.inputs.items()
            },
            "current_outputs": run.nodes_with_values(),
            "timestamp": now_ms(),
        }
