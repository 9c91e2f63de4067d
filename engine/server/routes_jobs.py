"""Jobs: one view of prompts in every state (ComfyUI's /api/jobs shape), and Loom's /api/run,
which submits a prompt and waits for its result."""

from __future__ import annotations

import asyncio
import base64
import math
import mimetypes
from typing import Any

from aiohttp import web

from engine.folders import UnsafePathError, safe_join
from engine.queue import JobRow, JobSort, PromptStore, State
from engine.server.http import ApiError, query_int, read_json
from engine.server.keys import CONFIG, REGISTRY, STORE, WORKER
from engine.server.submit import converted, submit
from engine.ui_workflow import is_ui_workflow

routes = web.RouteTableDef()
api_routes = web.RouteTableDef()

JOB_STATES: dict[str, tuple[State, str | None]] = {
    "pending": ("pending", None),
    "in_progress": ("running", None),
    "completed": ("done", "success"),
    "failed": ("done", "error"),
    "cancelled": ("done", "cancelled"),
}
MAX_RUN_TIMEOUT = 3600.0
PREVIEWABLE = ("images", "video", "audio")


def job_status(row: JobRow) -> str:
    if row.state != "done":
        return "pending" if row.state == "pending" else "in_progress"
    if row.status_str == "cancelled":
        return "cancelled"
    return "completed" if row.status_str == "success" else "failed"


def job(row: JobRow, full: bool = False) -> dict[str, Any]:
    history = row.history or {}
    outputs = history.get("outputs", {})
    status = history.get("status", {})
    error = next((data for event, data in status.get("messages", []) if event == "execution_error"), None)
    workflow = row.item.extra_data.get("extra_pnginfo", {})
    workflow_id = workflow.get("workflow", {}).get("id") if isinstance(workflow, dict) else None
    summary = {
        "id": row.item.prompt_id,
        "status": job_status(row),
        "priority": row.item.as_list()[0],
        "create_time": row.created_at,
        "execution_start_time": row.started_at,
        "execution_end_time": row.finished_at,
        "execution_error": error,
        "outputs_count": sum(len(v) for o in outputs.values() for v in o.values() if isinstance(v, list)),
        "preview_output": _preview(outputs),
        "workflow_id": workflow_id if isinstance(workflow_id, str) else None,
    }
    summary = {key: value for key, value in summary.items() if value is not None}
    if full:
        summary |= {
            "outputs": outputs,
            "execution_status": status or None,
            "workflow": {"prompt": row.item.prompt, "extra_data": row.item.extra_data},
        }
    return summary


def _preview(outputs: dict[str, Any]) -> dict[str, Any] | None:
    """The first previewable item, preferring saved outputs over temporary ones (as ComfyUI does)."""
    fallback = None
    for node_id, shown in outputs.items():
        for media, items in shown.items():
            for item in items if media in PREVIEWABLE and isinstance(items, list) else []:
                if isinstance(item, dict):
                    enriched = {**item, "nodeId": node_id, "mediaType": media}
                    if item.get("type") == "output":
                        return enriched
                    fallback = fallback or enriched
    return fallback


@routes.get("/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    names = [s.strip() for s in request.query.get("status", "").split(",") if s.strip()] or list(JOB_STATES)
    unknown = [n for n in names if n not in JOB_STATES]
    if unknown:
        raise ApiError(f"unknown status {unknown[0][:40]!r}; use {', '.join(JOB_STATES)}")
    sort_by = request.query.get("sort_by", "created_at")
    if sort_by not in ("created_at", "execution_duration"):
        raise ApiError("sort_by must be created_at or execution_duration")
    order = request.query.get("sort_order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError("sort_order must be asc or desc")
    limit = query_int(request, "limit", None, 1, 10_000)
    offset = query_int(request, "offset", 0, 0, 2**62) or 0
    sort: JobSort = "execution_duration" if sort_by == "execution_duration" else "created_at"
    rows, total = await asyncio.to_thread(
        request.app[STORE].jobs,
        [JOB_STATES[n] for n in names],
        sort,
        order == "desc",
        limit,
        offset,
        workflow_id=request.query.get("workflow_id"),
    )
    pagination = {"offset": offset, "limit": limit, "total": total, "has_more": offset + len(rows) < total}
    return web.json_response({"jobs": [job(r) for r in rows], "pagination": pagination})


@routes.get("/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    found = find_job(request.app[STORE], request.match_info["job_id"])
    if found is None:
        raise ApiError("Job not found", 404)
    return web.json_response(job(found, full=True))


@routes.post("/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """Interrupt the job if it runs, drop it from the queue if it waits."""
    job_id = request.match_info["job_id"]
    if not cancel(request.app, job_id):
        raise ApiError(f"no pending or running job {job_id[:200]!r}", 404)
    return web.json_response({"cancelled": [job_id]})


@routes.post("/jobs/cancel")
async def cancel_jobs(request: web.Request) -> web.Response:
    """Cancel several jobs ({"job_ids": [...]}); answers which were pending or running."""
    body = await read_json(request)
    ids = body.get("job_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError("job_ids must be a list of job ids")
    cancelled = [i for i in ids if cancel(request.app, i)]
    return web.json_response({"cancelled": cancelled})


def cancel(app: web.Application, job_id: str) -> bool:
    store, worker = app[STORE], app[WORKER]
    state = store.state(job_id)
    if state == "pending" and store.delete_pending([job_id]):
        worker.queue_changed()
        worker.release([job_id])
        return True
    return state == "running" and worker.interrupt(job_id)


def find_job(store: PromptStore, prompt_id: str) -> JobRow | None:
    rows, _ = store.jobs(JOB_STATES.values(), prompt_id=prompt_id)
    return rows[0] if rows else None


@api_routes.post("/api/workflow/convert")
async def post_convert(request: web.Request) -> web.Response:
    """A UI-format workflow (the body, or its "workflow" field) converted to the API format."""
    body = await read_json(request)
    workflow = body.get("workflow", body)
    if not is_ui_workflow(workflow):
        raise ApiError("expected a UI-format workflow: an object with 'nodes' and 'links' lists")
    return web.json_response(converted(workflow, request.app[REGISTRY]))


@api_routes.post("/api/run")
async def post_run(request: web.Request) -> web.Response:
    """Submit and wait: 200 with the outputs or the error once done, 202 with the status on timeout."""
    body = await read_json(request)
    timeout = body.get("timeout", 600)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
        raise ApiError("timeout must be a number of seconds")
    if not 0 < timeout <= MAX_RUN_TIMEOUT:
        raise ApiError(f"timeout must be between 0 and {MAX_RUN_TIMEOUT:g} seconds")
    accepted = await submit(request.app, body)
    prompt_id = accepted["prompt_id"]
    await request.app[WORKER].wait_for(prompt_id, float(timeout))
    found = find_job(request.app[STORE], prompt_id)
    if found is None or found.state != "done":
        status = "deleted" if found is None else job_status(found)
        return web.json_response({**accepted, "status": status}, status=202)
    result = job(found, full=True)
    messages = result.get("execution_status", {}).get("messages", [])
    interrupted = any(event == "execution_interrupted" for event, _ in messages)
    outputs = result["outputs"]
    if body.get("inline_images"):
        outputs = await asyncio.to_thread(_inline_images, request.app, outputs)
    return web.json_response(
        {
            **accepted,
            "status": "interrupted"
            if interrupted
            else ("success" if result["status"] == "completed" else "error"),
            "outputs": outputs,
            "error": result.get("execution_error"),
        }
    )


def _inline_images(app: web.Application, outputs: dict[str, Any]) -> dict[str, Any]:
    """A copy of the outputs where each image also carries its bytes as base64."""
    folders = app[CONFIG].folders
    inlined: dict[str, Any] = {}
    for node_id, shown in outputs.items():
        inlined[node_id] = dict(shown)
        images = shown.get("images")
        if isinstance(images, list):
            inlined[node_id]["images"] = [_with_data(folders, image) for image in images]
    return inlined


def _with_data(folders: Any, image: dict[str, Any]) -> dict[str, Any]:
    try:
        path = safe_join(folders.by_type(image["type"]), image.get("subfolder", ""), image["filename"])
        data = path.read_bytes()
    except (KeyError, OSError, UnsafePathError):
        return image
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {**image, "content_type": content_type, "data": base64.b64encode(data).decode()}
