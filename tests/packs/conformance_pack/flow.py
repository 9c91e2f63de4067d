"""Flow control by expansion (loops), dynamic cycles and execution blockers."""

from comfy.comfy_types import IO
from comfy_execution.graph import ExecutionBlocker
from comfy_execution.graph_utils import GraphBuilder, is_link

ANY = IO.ANY


class TestIntMath:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "subtract"
    CATEGORY = "Testing/Flow"

    def subtract(self, a, b):
        return (a - b,)


class TestToBool:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY,)}}

    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "convert"
    CATEGORY = "Testing/Flow"

    def convert(self, value):
        return (bool(value),)


class TestForLoopOpen:
    """Starts a loop of `remaining` iterations; copies made by the loop get `counter` instead."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"remaining": ("INT", {"default": 1, "min": 0, "max": 1000})},
            "optional": {"value": (ANY,)},
            "hidden": {"counter": (ANY,)},
        }

    RETURN_TYPES = ("FLOW_CONTROL", "INT", ANY)
    RETURN_NAMES = ("flow_control", "remaining", "value")
    FUNCTION = "open"
    CATEGORY = "Testing/Flow"

    def open(self, remaining, value=None, counter=None):
        return ("stub", remaining if counter is None else counter, value)


class TestWhileLoopClose:
    """Ends an iteration: done when `condition` is false, else expands into a copy of the loop body."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "flow_control": ("FLOW_CONTROL", {"rawLink": True}),
                "condition": ("BOOLEAN", {"forceInput": True}),
            },
            "optional": {"value": (ANY,), "counter": (ANY,)},
            "hidden": {"dynprompt": "DYNPROMPT", "unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = (ANY,)
    FUNCTION = "close"
    CATEGORY = "Testing/Flow"

    def close(self, flow_control, condition, dynprompt, unique_id, value=None, counter=None):
        if not condition:
            return (value,)
        open_id = flow_control[0]
        body = self._between(dynprompt, open_id, unique_id)
        graph = GraphBuilder()
        for node_id in body:
            original = dynprompt.get_node(node_id)
            graph.node(original["class_type"], node_id).set_override_display_id(node_id)
        for node_id in body:
            copy = graph.lookup_node(node_id)
            for name, linked in dynprompt.get_node(node_id)["inputs"].items():
                inside = is_link(linked) and linked[0] in body
                copy.set_input(name, graph.lookup_node(linked[0]).out(linked[1]) if inside else linked)
        new_open = graph.lookup_node(open_id)
        new_open.set_input("value", value)
        new_open.set_input("counter", counter)
        return {"result": (graph.lookup_node(unique_id).out(0),), "expand": graph.finalize()}

    def _between(self, dynprompt, open_id, close_id):
        """Nodes on some path from the open node to this close node (both included)."""
        readers = {}
        stack, seen = [close_id], {close_id}
        while stack:
            node_id = stack.pop()
            for linked in dynprompt.get_node(node_id)["inputs"].values():
                if is_link(linked):
                    readers.setdefault(linked[0], set()).add(node_id)
                    if linked[0] not in seen:
                        seen.add(linked[0])
                        stack.append(linked[0])
        body, stack = {open_id}, [open_id]
        while stack:
            for reader in readers.get(stack.pop(), ()):
                if reader not in body:
                    body.add(reader)
                    stack.append(reader)
        return sorted(body)


class TestForLoopClose:
    """Counts down the loop's `remaining` and hands over to TestWhileLoopClose, by expansion."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"flow_control": ("FLOW_CONTROL", {"rawLink": True})},
            "optional": {"value": (ANY, {"rawLink": True})},
        }

    RETURN_TYPES = (ANY,)
    FUNCTION = "close"
    CATEGORY = "Testing/Flow"

    def close(self, flow_control, value=None):
        graph = GraphBuilder()
        left = graph.node("TestIntMath", a=[flow_control[0], 1], b=1)
        condition = graph.node("TestToBool", value=left.out(0))
        close = graph.node(
            "TestWhileLoopClose",
            flow_control=flow_control,
            condition=condition.out(0),
            value=value,
            counter=left.out(0),
        )
        return {"result": (close.out(0),), "expand": graph.finalize()}


class TestDynamicCycle:
    """Expands into two nodes that read each other: a cycle only visible at run time."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"forceInput": True})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "Testing/Flow"

    def go(self, value):
        graph = GraphBuilder()
        first = graph.node("TestScale", factor=1.0)
        second = graph.node("TestScale", value=first.out(0), factor=1.0)
        first.set_input("value", second.out(0))
        return {"result": (second.out(0),), "expand": graph.finalize()}


class TestDoubleByExpansion:
    """Per list item: values above 1 expand into a TestScale node, others are returned directly."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"forceInput": True})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "Testing/Flow"

    def go(self, value):
        if value <= 1.0:
            return (value,)
        graph = GraphBuilder()
        scaled = graph.node("TestScale", value=value, factor=2.0)
        return {"result": (scaled.out(0),), "expand": graph.finalize()}


class TestBlocker:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "value": (ANY,),
                "block": ("BOOLEAN", {"forceInput": True}),
                "verbose": ("BOOLEAN", {"default": False}),
            }
        }

    RETURN_TYPES = (ANY,)
    FUNCTION = "go"
    CATEGORY = "Testing/Flow"

    def go(self, value, block, verbose):
        if block:
            return (ExecutionBlocker("Blocked Execution" if verbose else None),)
        return (value,)


class TestEquals:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": (ANY,), "b": (ANY,)}}

    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "go"
    CATEGORY = "Testing/Flow"

    def go(self, a, b):
        return (a == b,)


FLOW_NODES = {
    cls.__name__: cls
    for cls in (
        TestIntMath,
        TestToBool,
        TestForLoopOpen,
        TestWhileLoopClose,
        TestForLoopClose,
        TestDynamicCycle,
        TestDoubleByExpansion,
        TestBlocker,
        TestEquals,
    )
}
