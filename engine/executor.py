"""The executor: runs a validated prompt in topological order, re-running only what changed.

Events go to a listener with ComfyUI's names and fields: execution_start, execution_cached,
executing, progress, executed, execution_success / execution_error / execution_interrupted, and
finally executing with node None. The listener is called synchronously, so a listener that records
history on the terminal event has done so before `executing: None` goes out.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.cache import Entry, OutputCache, node_key
from engine.context import Context, EventListener, Interrupted
from engine.graph import is_link, plan
from engine.registry import NodeRegistry
from engine.spec import NodeSpec

Status = Literal["success", "error", "interrupted"]


@dataclass
class ExecutionResult:
    status: Status
    # UI output of every output node (what /history publishes under "outputs").
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    # The execution_error or execution_interrupted event data.
    error: dict[str, Any] | None = None


class NodeFailure(Exception):
    """A node raised or returned something unusable; carries what execution_error reports."""

    def __init__(
        self, node_id: str, spec: NodeSpec, exc: BaseException, inputs: dict[str, list[Any]]
    ) -> None:
        super().__init__(str(exc))
        self.node_id, self.spec, self.exc, self.inputs = node_id, spec, exc, inputs


def _no_listener(event: str, data: dict[str, Any]) -> None:
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)[:200]


class Executor:
    """Runs prompts one at a time; keeps node instances (per node id) and the output cache between them."""

    def __init__(self, registry: NodeRegistry, cache: OutputCache | None = None) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self._interrupt = threading.Event()
        self._instances: dict[tuple[str, str], Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def interrupt(self) -> None:
        """Stop the running prompt at the next node boundary or progress report."""
        self._interrupt.set()

    def execute(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        outputs: list[str],
        extra_data: dict[str, Any] | None = None,
        listener: EventListener | None = None,
    ) -> ExecutionResult:
        """Run a prompt that `validate_prompt` accepted (pass its coerced prompt and good outputs)."""
        emit = listener or _no_listener
        self._interrupt.clear()
        emit("execution_start", {"prompt_id": prompt_id, "timestamp": _now_ms()})
        run = _Run(self, prompt, prompt_id, extra_data or {}, emit)
        try:
            result = run.execute(plan(prompt, outputs))
        finally:
            self.cache.finish_prompt(set(run.keys.values()))
        emit("executing", {"node": None, "display_node": None, "prompt_id": prompt_id})
        return result

    def instance(self, node_id: str, spec: NodeSpec) -> Any:
        key = (node_id, spec.id)
        if key not in self._instances:
            self._instances[key] = spec.cls()
        return self._instances[key]

    def await_result(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)


class _Run:
    """The state of one prompt's execution."""

    def __init__(
        self,
        executor: Executor,
        prompt: dict[str, Any],
        prompt_id: str,
        extra_data: dict[str, Any],
        emit: EventListener,
    ) -> None:
        self.executor = executor
        self.prompt = prompt
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.emit = emit
        self.keys: dict[str, str] = {}
        self.values: dict[str, Entry] = {}
        self.result = ExecutionResult("success")

    def execute(self, order: list[str]) -> ExecutionResult:
        cache = self.executor.cache
        try:
            for node_id in order:
                self.keys[node_id] = self._key(node_id)
            for node_id in order:
                entry = cache.get(self.keys[node_id])
                if entry is not None:
                    self.values[self.keys[node_id]] = entry
                    self.result.cached.append(node_id)
            self.emit(
                "execution_cached",
                {"nodes": list(self.result.cached), "prompt_id": self.prompt_id, "timestamp": _now_ms()},
            )
            readers = self._count_readers(order)
            for node_id in order:
                key = self.keys[node_id]
                if key not in self.values:
                    self._check_interrupt(node_id)
                    self.values[key] = self._run_node(node_id)
                    cache.put(key, self.values[key])
                    self.result.executed.append(node_id)
                    self._release_inputs(node_id, readers)
                self._report_ui(node_id, self.values[key])
        except NodeFailure as failure:
            return self._fail(failure)
        except Interrupted as interrupted:
            return self._interrupted(str(interrupted.args[0]) if interrupted.args else "")
        self.emit("execution_success", {"prompt_id": self.prompt_id, "timestamp": _now_ms()})
        return self.result

    def _spec(self, node_id: str) -> NodeSpec:
        spec = self.executor.registry.get(self.prompt[node_id]["class_type"])
        assert spec is not None, "execute() takes validated prompts"
        return spec

    def _key(self, node_id: str) -> str:
        spec = self._spec(node_id)
        inputs = self.prompt[node_id]["inputs"]
        fingerprint = None
        if spec.fingerprint is not None:
            literals = {name: None if is_link(v) else v for name, v in inputs.items()}
            try:
                fingerprint = spec.fingerprint(**_accepted(spec.fingerprint, literals))
            except Exception as exc:
                raise NodeFailure(node_id, spec, exc, {k: [v] for k, v in literals.items()}) from exc
        sources = {str(v[0]): self.keys[str(v[0])] for v in inputs.values() if is_link(v)}
        salt = node_id if spec.not_idempotent else ""
        return node_key(spec.id, spec.version, inputs, sources, fingerprint, salt)

    def _count_readers(self, order: list[str]) -> dict[str, int]:
        """How many not-yet-computed nodes read each value, to free values nobody will read again."""
        readers: dict[str, int] = {}
        pending = {self.keys[n]: n for n in order if self.keys[n] not in self.values}
        for node_id in pending.values():
            for source in {
                self.keys[str(v[0])] for v in self.prompt[node_id]["inputs"].values() if is_link(v)
            }:
                readers[source] = readers.get(source, 0) + 1
        return readers

    def _release_inputs(self, node_id: str, readers: dict[str, int]) -> None:
        for source in {self.keys[str(v[0])] for v in self.prompt[node_id]["inputs"].values() if is_link(v)}:
            readers[source] -= 1
            if readers[source] == 0 and self.executor.cache.mode == "none":
                self.values.pop(source, None)

    def _check_interrupt(self, node_id: str) -> None:
        if self.executor._interrupt.is_set():
            raise Interrupted(node_id)

    def _gather(self, node_id: str, spec: NodeSpec) -> dict[str, list[Any]]:
        arguments: dict[str, list[Any]] = {}
        for name, value in self.prompt[node_id]["inputs"].items():
            declared = spec.input(name)
            if declared is None and not spec.accepts_extra_inputs:
                continue
            if declared is not None and declared.section == "hidden":
                continue
            if is_link(value) and not (declared is not None and declared.raw_link):
                arguments[name] = self.values[self.keys[str(value[0])]].outputs[value[1]]
            else:
                arguments[name] = [value]
        hidden = {
            "PROMPT": self.prompt,
            "EXTRA_PNGINFO": self.extra_data.get("extra_pnginfo"),
            "UNIQUE_ID": node_id,
            "DYNPROMPT": self.prompt,
        }
        for declared in spec.sections("hidden"):
            arguments[declared.name] = [hidden.get(declared.type)]
        return arguments

    def _run_node(self, node_id: str) -> Entry:
        spec = self._spec(node_id)
        self.emit("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id})
        arguments = self._gather(node_id, spec)
        ctx = Context(
            node_id=node_id,
            prompt_id=self.prompt_id,
            emit=self.emit,
            interrupt_flag=self.executor._interrupt,
            prompt=self.prompt,
            extra_pnginfo=self.extra_data.get("extra_pnginfo") or {},
        )
        instance = self.executor.instance(node_id, spec)
        try:
            return _merge(spec, [self._call(spec, instance, call, ctx) for call in _fan_out(spec, arguments)])
        except Interrupted:
            raise
        except Exception as exc:
            raise NodeFailure(node_id, spec, exc, arguments) from exc

    def _call(self, spec: NodeSpec, instance: Any, arguments: dict[str, Any], ctx: Context) -> Any:
        raw = spec.invoke(instance, arguments, ctx)
        if inspect.isawaitable(raw):
            raw = self.executor.await_result(raw)
        return raw

    def _report_ui(self, node_id: str, entry: Entry) -> None:
        if entry.ui is None:
            return
        self.result.outputs[node_id] = entry.ui
        self.emit(
            "executed",
            {"node": node_id, "display_node": node_id, "output": entry.ui, "prompt_id": self.prompt_id},
        )

    def _fail(self, failure: NodeFailure) -> ExecutionResult:
        exc = failure.exc
        self.result.status = "error"
        self.result.error = {
            "prompt_id": self.prompt_id,
            "node_id": failure.node_id,
            "node_type": failure.spec.id,
            "executed": list(self.result.executed),
            "exception_message": str(exc) or type(exc).__name__,
            "exception_type": _type_name(exc),
            "traceback": traceback.format_tb(exc.__traceback__),
            "current_inputs": {
                name: [_format_value(v) for v in values] for name, values in failure.inputs.items()
            },
            "current_outputs": sorted({n for n, k in self.keys.items() if k in self.values}),
            "timestamp": _now_ms(),
        }
        self.emit("execution_error", self.result.error)
        return self.result

    def _interrupted(self, node_id: str) -> ExecutionResult:
        self.result.status = "interrupted"
        self.result.error = {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt.get(node_id, {}).get("class_type"),
            "executed": list(self.result.executed),
            "timestamp": _now_ms(),
        }
        self.emit("execution_interrupted", self.result.error)
        return self.result


def _accepted(function: Any, values: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return values
    names = {p.name for p in params}
    return {k: v for k, v in values.items() if k in names}


def _fan_out(spec: NodeSpec, arguments: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """ComfyUI's list semantics: one call per item of the longest input list, shorter lists repeat
    their last item; a node with INPUT_IS_LIST gets the whole lists in a single call."""
    if spec.input_is_list:
        return [arguments]
    if any(len(values) == 0 for values in arguments.values()):
        return []
    count = max((len(values) for values in arguments.values()), default=1)
    return [
        {name: values[min(i, len(values) - 1)] for name, values in arguments.items()} for i in range(count)
    ]


def _merge(spec: NodeSpec, results: list[Any]) -> Entry:
    outputs: tuple[list[Any], ...] = tuple([] for _ in spec.outputs)
    ui: dict[str, Any] | None = None
    for raw in results:
        values, shown = _normalize(spec, raw)
        for slot, output in enumerate(spec.outputs):
            if output.is_list:
                outputs[slot].extend(values[slot])
            else:
                outputs[slot].append(values[slot])
        if shown is not None:
            ui = ui or {}
            for name, items in shown.items():
                ui.setdefault(name, []).extend(items if isinstance(items, list) else [items])
    return Entry(outputs, ui)


def _normalize(spec: NodeSpec, raw: Any) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """(output values, ui) from what a node function returned."""
    ui = None
    if isinstance(raw, dict) and {"ui", "result"} & raw.keys():
        ui, raw = raw.get("ui"), raw.get("result", ())
    if raw is None:
        raw = ()
    if not isinstance(raw, (tuple, list)):
        raise TypeError(f"returned {type(raw).__name__}; a node must return a tuple of its outputs")
    if len(raw) < len(spec.outputs):
        raise TypeError(f"returned {len(raw)} value(s) but declares {len(spec.outputs)} output(s)")
    return tuple(raw), ui
