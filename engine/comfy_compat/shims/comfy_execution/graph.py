"""ComfyUI's comfy_execution.graph: the blocker value and the dynamic prompt (DYNPROMPT)."""

from engine.execution.dynprompt import DynamicPrompt, NodeNotFoundError
from engine.execution.failures import DependencyCycleError
from engine.execution.graph_builder import ExecutionBlocker

__all__ = ["DependencyCycleError", "DynamicPrompt", "ExecutionBlocker", "NodeNotFoundError"]
