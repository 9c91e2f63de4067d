"""The state of one prompt's run and the lookups on it: specs, instances, cache keys, node inputs."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from functools import cache
from typing import TYPE_CHECKING, Any

from engine.cache import Entry, node_key
from engine.context import EventListener
from engine.execution.calls import CallResult
from engine.execution.dynprompt import DynamicPrompt
from engine.execution.scheduler import ExecutionList, natural_key
from engine.graph import is_link
from engine.spec import NodeSpec, parameter_names

if TYPE_CHECKING:
    from engine.executor import ExecutionResult, Executor

logger = logging.getLogger(__name__)
HIDDEN_TYPES = frozenset(
    {"PROMPT", "DYNPROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"}
)


class RunState:
    """What one prompt's run knows: its (growing) prompt, cache keys, values, specs and instances."""

    def __init__(
        self,
        executor: Executor,
        prompt: dict[str, Any],
        prompt_id: str,
        extra_data: dict[str, Any],
        emit: EventListener,
        result: ExecutionResult,
    ) -> None:
        self.executor = executor
        self.cache = executor.cache
        self.prompt = prompt
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.emit = emit
        self.result = result
        self.dynprompt = DynamicPrompt(prompt)
        self.keys: dict[str, str] = {}
        self.values: dict[str, Entry] = {}
        self.schedule = ExecutionList(self.links, self._resolved, self._lazy_inputs, self._is_output)
        self._specs: dict[str, NodeSpec] = {}
        self._links: dict[str, list[tuple[str, str, int]]] = {}
        self._expansions: dict[str, tuple[list[CallResult], dict[str, list[Any]]]] = {}
        self._tasks: dict[asyncio.Future[Any], tuple[str, dict[str, list[Any]]]] = {}
        self._finished: dict[str, tuple[list[Any], dict[str, list[Any]]]] = {}
        self._ephemeral_instances: dict[str, Any] = {}
        # With no cache between prompts, a value is dropped once every node reading it has run.
        self._readers: dict[str, int] | None = {} if self.cache.mode == "none" else None
        self._counted: set[str] = set()

    def used_keys(self) -> set[str]:
        return set(self.keys.values())

    def nodes_with_values(self) -> list[str]:
        return sorted((n for n, k in self.keys.items() if k in self.values), key=natural_key)

    def _gather(self, node_id: str, spec: NodeSpec) -> tuple[dict[str, list[Any]], set[str]]:
        """Each input as a list of items; lazy inputs not computed yet are [None] and listed as missing."""
        arguments: dict[str, list[Any]] = {}
        missing: set[str] = set()
        for name, value in self.dynprompt.get_node(node_id)["inputs"].items():
            declared = spec.input(name)
            if declared is None:
                if not spec.accepts_extra_inputs:
                    continue
            elif declared.section == "hidden" and declared.type in HIDDEN_TYPES:
                continue
            if is_link(value) and not (declared is not None and declared.raw_link):
                entry = self.values.get(self.keys[str(value[0])])
                if entry is None:
                    arguments[name] = [None]
                    missing.add(name)
                else:
                    arguments[name] = entry.outputs[value[1]]
            else:
                arguments[name] = [value]
        for declared in spec.inputs:
            if declared.section == "hidden" and declared.type in HIDDEN_TYPES:
                arguments[declared.name] = [self._hidden(declared.type, node_id)]
        return arguments, missing

    def _hidden(self, kind: str, node_id: str) -> Any:
        if kind == "PROMPT":
            return self.prompt
        if kind == "DYNPROMPT":
            return self.dynprompt
        if kind == "UNIQUE_ID":
            return node_id
        if kind == "EXTRA_PNGINFO":
            return self.extra_data.get("extra_pnginfo")
        return self.extra_data.get(kind.lower())

    async def _key_added(self, added: list[str]) -> None:
        """Keys for expansion nodes, sources first; nodes in a cycle get keys that match nothing."""
        waiting = list(added)
        while waiting:
            ready = [n for n in waiting if all(s in self.keys for s in self._sources(n))]
            if not ready:
                break
            for node_id in ready:
                self.keys[node_id] = await self._key(node_id)
            waiting = [n for n in waiting if n not in self.keys]
        for node_id in waiting:
            unknown = [s for s in self._sources(node_id) if not self.dynprompt.has_node(s)]
            if unknown:
                raise ValueError(f"expansion node {node_id!r} links to {unknown[0]!r}, which does not exist")
            self.keys[node_id] = node_key("cycle", "", {}, {}, math.nan)

    async def _key(self, node_id: str) -> str:
        spec = self._spec(node_id)
        inputs = self.dynprompt.get_node(node_id)["inputs"]
        fingerprint = None
        if spec.fingerprint is not None:
            literals = {name: None if is_link(v) else v for name, v in inputs.items()}
            accepted = _accepted_names(spec.fingerprint)
            if accepted is not None:
                literals = {k: v for k, v in literals.items() if k in accepted}
            try:
                fingerprint = spec.fingerprint(**literals)
                if inspect.isawaitable(fingerprint):
                    fingerprint = await fingerprint
            except Exception as exc:  # ComfyUI's rule: a failing IS_CHANGED means "changed"
                logger.warning("IS_CHANGED of node %s (%s) raised %r; running it", node_id, spec.id, exc)
                fingerprint = math.nan
        sources = {s: self.keys[s] for s in self._sources(node_id)}
        # As ComfyUI: a node that reads its own id (hidden UNIQUE_ID) may act on it, so its outputs
        # are not shared with another node of the same inputs.
        reads_own_id = any(i.section == "hidden" and i.type == "UNIQUE_ID" for i in spec.inputs)
        salt = node_id if spec.not_idempotent or reads_own_id else ""
        return node_key(spec.id, spec.version, inputs, sources, fingerprint, salt)

    def _sources(self, node_id: str) -> list[str]:
        return [source for _, source, _ in self.links(node_id)]

    def links(self, node_id: str) -> list[tuple[str, str, int]]:
        """(input, source node, slot) of each linked input; a node's inputs never change once added."""
        found = self._links.get(node_id)
        if found is None:
            inputs = self.dynprompt.get_node(node_id)["inputs"]
            found = self._links[node_id] = [(n, str(v[0]), v[1]) for n, v in inputs.items() if is_link(v)]
        return found

    def _spec(self, node_id: str) -> NodeSpec:
        spec = self._specs.get(node_id)
        if spec is None:
            found = self.executor.registry.get(self.dynprompt.get_node(node_id)["class_type"])
            assert found is not None, "execute() takes validated prompts"
            spec = self._specs[node_id] = found
        return spec

    def _instance(self, node_id: str, spec: NodeSpec) -> Any:
        if node_id in self.prompt:
            return self.executor.instance(node_id, spec)
        if node_id not in self._ephemeral_instances:
            self._ephemeral_instances[node_id] = spec.cls()
        return self._ephemeral_instances[node_id]

    def _resolved(self, node_id: str) -> bool:
        return self.keys[node_id] in self.values

    def _lazy_inputs(self, node_id: str) -> frozenset[str]:
        return self._spec(node_id).lazy_inputs

    def _is_output(self, node_id: str) -> bool:
        return self._spec(node_id).output_node


@cache
def _accepted_names(function: Any) -> frozenset[str] | None:
    return parameter_names(function)
