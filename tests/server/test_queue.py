"""Queue order, delete/clear, interrupt, history paging, the jobs API and /api/run."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from tests.server.conftest import Client, Server, connect, events_until_done, graph, waiting


def pending_ids(queue: dict[str, list[list[object]]]) -> list[object]:
    return [item[1] for item in queue["queue_pending"]]


async def block(client: Client, server: Server) -> tuple[str, Path]:
    """Occupy the worker until the returned file is created."""
    release = server.base / f"release-{uuid.uuid4().hex}"
    prompt_id = await client.queue(waiting(release))
    await client.wait_running(prompt_id)
    return prompt_id, release


async def test_priorities_front_delete_and_clear(server: Server) -> None:
    async with connect(server) as client:
        blocker, release = await block(client, server)
        a = await client.queue(graph(color=11, prefix="a"), prompt_id="a")
        b = await client.queue(graph(color=12, prefix="b"), prompt_id="b")
        c = await client.queue(graph(color=13, prefix="c"), prompt_id="c", front=True)
        d = await client.queue(graph(color=14, prefix="d"), prompt_id="d", number=-1e6)
        queue = await client.get("/queue")
        assert [i[1] for i in queue["queue_running"]] == [blocker]
        assert pending_ids(queue) == [d, c, a, b]
        assert queue["queue_pending"][1][0] < 0 and len(queue["queue_pending"][0]) == 5
        assert (await client.get("/prompt"))["exec_info"]["queue_remaining"] == 5
        await client.post("/queue", {"delete": [c, "no-such-id"]})
        assert pending_ids(await client.get("/queue")) == [d, a, b]
        await client.post("/api/queue", {"clear": True})
        queue = await client.get("/queue")
        assert queue["queue_pending"] == [] and len(queue["queue_running"]) == 1
        release.touch()
        await client.wait_queue_empty()
        assert a not in await client.get("/history")


async def test_interrupt_stops_the_running_prompt(server: Server) -> None:
    async with connect(server) as client, client.websocket("stopper") as ws:
        never = server.base / "never"
        prompt_id = await client.queue(waiting(never), "stopper")
        await client.wait_running(prompt_id)
        await client.post("/interrupt", {"prompt_id": "some-other-prompt"})
        await client.wait_running(prompt_id)
        await client.post("/interrupt")
        events = await events_until_done(ws, prompt_id)
        entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    names = [name for name, _ in events]
    assert "progress" in names and "execution_interrupted" in names and "execution_success" not in names
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False


async def test_history_paging_and_deletion(server: Server) -> None:
    async with connect(server) as client:
        await client.post("/history", {"clear": True})
        ids = [await client.queue(graph(color=100 + i, prefix=f"page{i}")) for i in range(5)]
        await client.wait_queue_empty()
        assert list(await client.get("/history")) == ids
        assert list(await client.get("/history?max_items=2")) == ids[-2:]
        assert list(await client.get("/history?max_items=2&offset=1")) == ids[1:3]
        await client.get("/history?max_items=abc", status=400)
        await client.get("/history?max_items=-5", status=400)
        await client.post("/history", {"delete": [ids[0]]})
        assert (await client.get(f"/history/{ids[0]}")) == {}
        assert list(await client.get("/history")) == ids[1:]


async def test_jobs_api(server: Server) -> None:
    async with connect(server) as client:
        await client.post("/history", {"clear": True})
        ok = await client.queue(
            graph(color=7, prefix="job"), extra_data={"extra_pnginfo": {"workflow": {"id": "w1"}}}
        )
        bad = await client.queue(
            {
                "1": {"class_type": "Explode", "inputs": {"value": 2.0}},
                "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
            }
        )
        await client.wait_queue_empty()
        blocker, release = await block(client, server)
        pending = await client.queue(graph(color=8, prefix="job"))
        listing = await client.get("/api/jobs")
        statuses = {job["id"]: job["status"] for job in listing["jobs"]}
        assert statuses == {ok: "completed", bad: "failed", blocker: "in_progress", pending: "pending"}
        assert listing["pagination"] == {"offset": 0, "limit": None, "total": 4, "has_more": False}
        assert [j["id"] for j in listing["jobs"]] == [pending, blocker, bad, ok]  # newest first
        failed = await client.get("/api/jobs?status=failed")
        assert [j["id"] for j in failed["jobs"]] == [bad] and failed["jobs"][0]["execution_error"][
            "node_id"
        ] == "1"
        page = await client.get("/api/jobs?sort_order=asc&limit=2&offset=1")
        assert [j["id"] for j in page["jobs"]] == [bad, blocker] and page["pagination"]["has_more"] is True
        assert [j["id"] for j in (await client.get("/api/jobs?workflow_id=w1"))["jobs"]] == [ok]
        detail = await client.get(f"/api/jobs/{ok}")
        assert detail["outputs_count"] == 1 and detail["preview_output"]["nodeId"] == "2"
        assert detail["outputs"]["2"]["images"][0]["filename"].startswith("job_")
        assert detail["workflow"]["prompt"]["1"]["class_type"] == "EmptyImage"
        await client.get("/api/jobs/nope", status=404)
        await client.get("/api/jobs?status=bogus", status=400)
        await client.get("/api/jobs?sort_by=name", status=400)
        await client.get("/api/jobs?limit=0", status=400)
        release.touch()
        await client.wait_queue_empty()


async def test_run_waits_and_returns_outputs(server: Server) -> None:
    async with connect(server) as client:
        done = await client.post(
            "/api/run", {"prompt": graph(color=0xABCDEF, prefix="run"), "inline_images": True}
        )
        assert done["status"] == "success" and done["error"] is None
        image = done["outputs"]["2"]["images"][0]
        assert image["content_type"] == "image/png"
        assert base64.b64decode(image["data"])[:4] == b"\x89PNG"
        failing = {
            "1": {"class_type": "Explode", "inputs": {"value": 3.0}},
            "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
        }
        failed = await client.post("/api/run", {"prompt": failing})
        assert failed["status"] == "error" and "cannot handle 3.0" in failed["error"]["exception_message"]
        release = server.base / "run-release"
        slow = await client.post("/api/run", {"prompt": waiting(release), "timeout": 0.3}, status=202)
        assert slow["status"] == "in_progress"
        release.touch()
        await client.wait_queue_empty()
        await client.post("/api/run", {"prompt": graph(), "timeout": -1}, status=400)
        await client.post("/api/run", {"prompt": {}}, status=400)
