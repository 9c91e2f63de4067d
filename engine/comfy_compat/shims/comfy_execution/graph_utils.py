"""ComfyUI's comfy_execution.graph_utils: building graphs for node expansion."""

from engine.execution.graph_builder import (
    BuilderNode as Node,
)
from engine.execution.graph_builder import (
    ExecutionBlocker,
    GraphBuilder,
    add_graph_prefix,
    is_link,
)

__all__ = ["ExecutionBlocker", "GraphBuilder", "Node", "add_graph_prefix", "is_link"]
