"""Turning a POST /prompt body into a queued prompt, with ComfyUI's answers and errors."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

from aiohttp import web

from engine.comfy_compat.prompt_server import PromptServer
from engine.graph import prompt_error, validate_prompt
from engine.queue import DuplicatePromptError
from engine.registry import NodeRegistry
from engine.server.http import ApiError
from engine.server.keys import CONFIG, REGISTRY, STORE, WORKER
from engine.ui_workflow import is_ui_workflow

MAX_ID_LENGTH = 200
log = logging.getLogger("loom.server")


def prompt_failure(kind: str, message: str, details: str = "", node_errors: Any = None) -> ApiError:
    """ComfyUI's 400 for a rejected prompt: {"error": {type, message, details, extra_info}, "node_errors"}."""
    failure = ApiError(message, 400)
    failure.body = {"error": prompt_error(kind, message, details), "node_errors": node_errors or {}}
    return failure


def converted(workflow: dict[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    """A UI-format (litegraph) workflow as an API-format prompt, or ComfyUI's 400 naming the node."""
    from engine.ui_workflow import WorkflowConversionError, ui_to_api

    try:
        return ui_to_api(workflow, registry)
    except WorkflowConversionError as exc:
        raise prompt_failure("invalid_prompt", "Cannot convert the UI-format workflow", str(exc)) from None


async def submit(app: web.Application, body: dict[str, Any]) -> dict[str, Any]:
    """Validate and queue; returns {prompt_id, number, node_errors} or raises a 400 ApiError."""
    body = PromptServer.instance.trigger_on_prompt(body)  # custom node packs may rewrite it
    if "prompt" not in body:
        raise prompt_failure("no_prompt", "No prompt provided", "No prompt provided")
    prompt = body["prompt"]
    if is_ui_workflow(prompt):
        prompt = converted(prompt, app[REGISTRY])
    prompt_id = _prompt_id(body.get("prompt_id"))
    number = _number(body.get("number"))
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise ApiError("extra_data must be an object")
    targets = body.get("partial_execution_targets")
    if targets is not None and (
        not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)
    ):
        raise ApiError("partial_execution_targets must be a list of node ids")
    client_id = body.get("client_id")
    if client_id is not None and not isinstance(client_id, str):
        raise ApiError("client_id must be a string")
    _check_string_sizes(prompt, app[CONFIG].max_string_input)

    checked = await asyncio.to_thread(validate_prompt, app[REGISTRY], prompt, targets)
    if not checked.ok:
        error = checked.error or prompt_error("invalid_prompt", "Invalid prompt")
        failure = prompt_failure(
            error["type"], error["message"], error.get("details", ""), checked.node_errors
        )
        raise failure
    extra_data = {**extra_data, "create_time": int(time.time() * 1000)}
    if client_id is not None:
        extra_data["client_id"] = client_id
    try:
        queued_as = app[STORE].add(
            prompt_id, checked.prompt, extra_data, checked.outputs, number, bool(body.get("front"))
        )
    except DuplicatePromptError as exc:
        raise prompt_failure("duplicate_prompt_id", str(exc)) from None
    log.info("got prompt")
    app[WORKER].queue_changed()
    return {"prompt_id": prompt_id, "number": queued_as, "node_errors": checked.node_errors}


def _prompt_id(value: Any) -> str:
    if value is None:
        return str(uuid.uuid4())
    if (
        not isinstance(value, (str, int))
        or isinstance(value, bool)
        or not 0 < len(str(value)) <= MAX_ID_LENGTH
    ):
        raise ApiError(f"prompt_id must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    return str(value)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError("number must be a finite number")
    if abs(value) > 2**53:
        raise ApiError("number is out of range (|number| <= 2**53)")
    return float(value)


def _check_string_sizes(prompt: Any, limit: int) -> None:
    if not isinstance(prompt, dict):
        return
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name, value in inputs.items():
            if isinstance(value, str) and len(value) > limit:
                details = f"{name} is {len(value)} characters long; the limit is {limit}"
                node_errors = {
                    str(node_id): {
                        "errors": [prompt_error("value_too_long", "Value too long", details)],
                        "dependent_outputs": [],
                        "class_type": node.get("class_type"),
                    }
                }
                raise prompt_failure(
                    "prompt_outputs_failed_validation", "Value too long", details, node_errors
                )
