"""One prompt's execution: the dynamic schedule, node calls, lazy inputs, expansion, async nodes."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from engine.cache import Entry
from engine.context import Context, Interrupted, current_context
from engine.execution.calls import CallResult, blocker_in, fan_out, items, merge, normalize, plain_slots
from engine.execution.failures import (
    NODE_FAULTS,
    DependencyCycleError,
    DuplicateNodeError,
    NodeFailure,
    now_ms,
)
from engine.execution.graph_builder import ExecutionBlocker, GraphBuilder
from engine.execution.scheduler import natural_key
from engine.execution.state import RunState
from engine.graph import is_link, plan
from engine.spec import NodeSpec

# How often a run waiting on async nodes looks at the interrupt flag.
INTERRUPT_POLL_S = 0.05


class PromptRun(RunState):
    """One prompt's execution: the scheduling loop, node calls, expansion and async nodes."""

    async def execute(self, outputs: list[str]) -> None:
        try:
            order = plan(self.prompt, outputs)
            for node_id in order:
                self.keys[node_id] = await self._key(node_id)
            for node_id in order:
                entry = self.cache.get(self.keys[node_id])
                if entry is not None:
                    self.values[self.keys[node_id]] = entry
                    self.result.cached.append(node_id)
            self.emit(
                "execution_cached",
                {"nodes": list(self.result.cached), "prompt_id": self.prompt_id, "timestamp": now_ms()},
            )
            self._count_readers(order)
            for node_id in outputs:
                self.schedule.add_node(node_id)
            while self.schedule.pending:
                ready = self.schedule.pop_ready()
                if ready is not None:
                    await self._stage(ready)
                elif self._tasks:
                    await self._collect_tasks()
                else:
                    self._raise_cycle()
        finally:
            if self._tasks:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one node -------------------------------------------------------------------------------

    async def _stage(self, node_id: str) -> None:
        spec = self._spec(node_id)
        entry = self.values.get(self.keys[node_id])
        if entry is not None and node_id not in self._expansions:
            # cached, or an identical node already ran in this prompt
            self._report_ui(node_id, entry)
            self._complete(node_id)
            return
        if self.executor.interrupt_flag.is_set():
            raise Interrupted(node_id)
        # Sent each time the node is staged, as ComfyUI does: again after the inputs it asked for,
        # its async call or its expansion have run.
        display = self.dynprompt.get_display_node_id(node_id)
        self.emit("executing", {"node": node_id, "display_node": display, "prompt_id": self.prompt_id})
        if node_id in self._finished:
            raws, arguments = self._finished.pop(node_id)
            await self._finish(node_id, spec, raws, arguments)
            return
        if node_id in self._expansions:
            self._store(node_id, self._resolve_expansion(node_id, spec))
            return
        arguments, missing = self._gather(node_id, spec)
        instance = self._instance(node_id, spec)
        if spec.check_lazy is not None and await self._wants_more(
            node_id, spec, instance, arguments, missing
        ):
            return  # staged again once the inputs it asked for exist
        raws = self._call(node_id, spec, instance, arguments)
        if any(isinstance(raw, asyncio.Future) for raw in raws):
            task = asyncio.ensure_future(_resolve_all(raws))
            self._tasks[task] = (node_id, arguments)
            return
        await self._finish(node_id, spec, raws, arguments)

    async def _wants_more(
        self,
        node_id: str,
        spec: NodeSpec,
        instance: Any,
        arguments: dict[str, list[Any]],
        missing: set[str],
    ) -> bool:
        """Ask check_lazy_status which lazy inputs it needs; schedule those. True if the node must wait."""
        assert spec.check_lazy is not None
        needed: set[str] = set()
        for call in fan_out(spec, arguments):
            if blocker_in(spec, call) is not None:
                continue
            try:
                answer = spec.check_lazy(instance, call)
                if inspect.isawaitable(answer):
                    answer = await answer
            except Interrupted:
                raise
            except NODE_FAULTS as exc:
                raise NodeFailure(node_id, exc, arguments) from exc
            if isinstance(answer, (list, tuple, set)):
                needed.update(name for name in answer if isinstance(name, str))
        waits = False
        for name in sorted(needed):
            if name in missing or name not in arguments:
                waits = self.schedule.make_input_strong_link(node_id, name) or waits
        return waits

    def _call(
        self, node_id: str, spec: NodeSpec, instance: Any, arguments: dict[str, list[Any]]
    ) -> list[Any]:
        """Call the node once per list item; coroutines become tasks that run alongside other nodes."""
        display = self.dynprompt.get_display_node_id(node_id)
        ctx = Context(
            node_id=node_id,
            prompt_id=self.prompt_id,
            emit=self.emit,
            interrupt_flag=self.executor.interrupt_flag,
            prompt=self.prompt,
            extra_pnginfo=self.extra_data.get("extra_pnginfo") or {},
            display_node=display if display != node_id else None,
            previews=self.extra_data.get("preview_method", "auto") != "none",
            preview_method=str(self.extra_data.get("preview_method", "latent2rgb")),
        )
        raws: list[Any] = []
        token = current_context.set(ctx)
        try:
            for index, call in enumerate(fan_out(spec, arguments)):
                blocker = blocker_in(spec, call)
                if blocker is not None:
                    raws.append(self._blocked(node_id, spec, blocker))
                    continue
                GraphBuilder.set_default_prefix(node_id, index, 0)
                raw = spec.invoke(instance, call, ctx)
                raws.append(asyncio.ensure_future(raw) if inspect.isawaitable(raw) else raw)
        except Interrupted:
            raise
        except NODE_FAULTS as exc:
            raise NodeFailure(node_id, exc, arguments) from exc
        finally:
            current_context.reset(token)
        return raws

    def _blocked(self, node_id: str, spec: NodeSpec, blocker: ExecutionBlocker) -> ExecutionBlocker:
        """A blocker with a message is reported once, where it stops a node, then passes on silently."""
        if blocker.message is None:
            return blocker
        event = {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": spec.id,
            "executed": list(self.result.executed),
            "exception_message": f"Execution Blocked: {blocker.message}",
            "exception_type": "ExecutionBlocked",
            "traceback": [],
            "current_inputs": [],
            "current_outputs": [],
        }
        self.result.blocked.append(event)
        self.emit("execution_error", event)
        return ExecutionBlocker(None)

    async def _collect_tasks(self) -> None:
        done, _ = await asyncio.wait(
            self._tasks, timeout=INTERRUPT_POLL_S, return_when=asyncio.FIRST_COMPLETED
        )
        if self.executor.interrupt_flag.is_set():
            raise Interrupted(min((n for n, _ in self._tasks.values()), key=natural_key))
        for task in sorted(done, key=lambda t: natural_key(self._tasks[t][0])):
            node_id, arguments = self._tasks.pop(task)
            try:
                raws = task.result()
            except Interrupted:
                raise
            except NODE_FAULTS as exc:
                raise NodeFailure(node_id, exc, arguments) from exc
            self._finished[node_id] = (raws, arguments)
            self.schedule.requeue(node_id)

    async def _finish(
        self, node_id: str, spec: NodeSpec, raws: list[Any], arguments: dict[str, list[Any]]
    ) -> None:
        try:
            calls = [normalize(spec, raw) for raw in raws]
        except Exception as exc:
            raise NodeFailure(node_id, exc, arguments) from exc
        if any(call.graph is not None for call in calls):
            await self._expand(node_id, calls, arguments)
            return
        self._store(node_id, merge(spec, [plain_slots(spec, c) for c in calls], [c.ui for c in calls]))

    def _store(self, node_id: str, entry: Entry) -> None:
        key = self.keys[node_id]
        self.values[key] = entry
        self.cache.put(key, entry)
        self.result.executed.append(node_id)
        self._report_ui(node_id, entry)
        self._complete(node_id)

    def _complete(self, node_id: str) -> None:
        self.schedule.complete(node_id)
        if self._readers is not None and node_id in self._counted:
            self._counted.discard(node_id)
            for _, source_id, _ in self.links(node_id):
                if source_id in self.prompt:
                    source = self.keys[source_id]
                    self._readers[source] -= 1
                    if self._readers[source] == 0:
                        self.values.pop(source, None)

    def _count_readers(self, node_ids: list[str]) -> None:
        if self._readers is None:
            return
        for node_id in node_ids:
            if self.keys[node_id] in self.values:
                continue
            self._counted.add(node_id)
            for _, source_id, _ in self.links(node_id):
                if source_id in self.prompt:
                    source = self.keys[source_id]
                    self._readers[source] = self._readers.get(source, 0) + 1

    def _report_ui(self, node_id: str, entry: Entry) -> None:
        if entry.ui is None:
            return
        display = self.dynprompt.get_display_node_id(node_id)
        self.result.outputs[node_id] = entry.ui
        self.result.meta[node_id] = {
            "node_id": node_id,
            "display_node": display,
            "parent_node": self.dynprompt.get_parent_node_id(node_id),
            "real_node_id": self.dynprompt.get_real_node_id(node_id),
        }
        self.emit(
            "executed",
            {"node": node_id, "display_node": display, "output": entry.ui, "prompt_id": self.prompt_id},
        )

    # -- expansion ------------------------------------------------------------------------------

    async def _expand(self, node_id: str, calls: list[CallResult], arguments: dict[str, list[Any]]) -> None:
        """Add the returned nodes to the prompt; the node resolves once the outputs it named exist."""
        added: list[str] = []
        try:
            for call in calls:
                for new_id, info in (call.graph or {}).items():
                    if self.dynprompt.has_node(new_id):
                        raise DuplicateNodeError(
                            f"Attempt to add duplicate node {new_id}. Ensure node ids are unique and "
                            "deterministic or use graph_utils.GraphBuilder."
                        )
                    class_type = info.get("class_type") if isinstance(info, dict) else None
                    if not isinstance(class_type, str) or class_type not in self.executor.registry:
                        raise ValueError(f"expansion node {new_id!r} has unknown class_type {class_type!r}")
                    node = {"class_type": class_type, "inputs": dict(info.get("inputs") or {})}
                    display = info.get("override_display_id", node_id)
                    self.dynprompt.add_ephemeral_node(new_id, node, node_id, display)
                    added.append(new_id)
            await self._key_added(added)
        except Exception as exc:
            raise NodeFailure(node_id, exc, arguments) from exc
        self._expansions[node_id] = (calls, arguments)
        for new_id in added:
            if self._is_output(new_id):
                self.schedule.add_node(new_id)
        for call in calls:
            if call.graph is not None:
                for value in call.values:
                    if is_link(value):
                        self.schedule.add_strong_link(str(value[0]), node_id)
        self.schedule.requeue(node_id)

    def _resolve_expansion(self, node_id: str, spec: NodeSpec) -> Entry:
        calls, arguments = self._expansions.pop(node_id)
        slots_per_call = []
        try:
            for call in calls:
                if call.graph is None:
                    slots_per_call.append(plain_slots(spec, call))
                    continue
                slots = []
                for value, output in zip(call.values, spec.outputs, strict=False):
                    if is_link(value):
                        slots.append(list(self.values[self.keys[str(value[0])]].outputs[value[1]]))
                    else:
                        slots.append(items(value, output.is_list))
                slots_per_call.append(slots)
        except (KeyError, IndexError) as exc:
            raise NodeFailure(node_id, exc, arguments) from exc
        return merge(spec, slots_per_call, [call.ui for call in calls])

    def _raise_cycle(self) -> None:
        """Nothing is ready and nothing is running: expanded nodes wait on each other. Blame the node
        whose expansion created them (cycles among submitted nodes never pass validation)."""
        cycle = self.schedule.nodes_in_cycle() or sorted(self.schedule.pending, key=natural_key)
        blamed = cycle[0]
        for node_id in cycle:
            display = self.dynprompt.get_display_node_id(node_id)
            if display != node_id:
                blamed = display
                break
        raise NodeFailure(
            blamed,
            DependencyCycleError("Dependency cycle detected"),
            exception_type="graph.DependencyCycleError",
        )


async def _resolve_all(raws: list[Any]) -> list[Any]:
    return [await raw if isinstance(raw, asyncio.Future) else raw for raw in raws]
