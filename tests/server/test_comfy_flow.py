"""What a ComfyUI client sees: submit, watch the websocket, read history, fetch the image."""

from __future__ import annotations

import struct
import uuid

from tests.server.conftest import Server, connect, events_until_done, graph
from tests.server.server_nodes import TINY_PNG


def without_status(events: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """The events ComfyUI's older clients know (progress_state has its own test)."""
    return [(name, data) for name, data in events if name not in ("status", "progress_state")]


async def test_comfyui_client_flow(server: Server) -> None:
    async with connect(server) as client, client.websocket("flow") as ws:
        hello = await ws.receive_json()
        assert hello == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "flow"},
        }
        accepted = await client.post(
            "/prompt", {"prompt": graph(color=0xFF0000, prefix="flow"), "client_id": "flow"}
        )
        assert set(accepted) == {"prompt_id", "number", "node_errors"} and accepted["node_errors"] == {}
        prompt_id = accepted["prompt_id"]
        await events_until_done(ws, prompt_id)
        history = await client.get(f"/history/{prompt_id}")
        entry = history[prompt_id]
        assert entry["prompt"][1] == prompt_id and entry["prompt"][4] == ["2"]
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
        image = entry["outputs"]["2"]["images"][0]
        assert image == {"filename": "flow_00001_.png", "subfolder": "", "type": "output"}
        async with client.session.get(f"{server.url}/view", params=image) as response:
            assert response.status == 200 and response.content_type == "image/png"
            assert (await response.read())[:8] == b"\x89PNG\r\n\x1a\n"
        assert (await client.get("/api/history/" + prompt_id)) == history


async def test_event_order_for_one_prompt(server: Server) -> None:
    async with connect(server) as client, client.websocket("order") as ws:
        prompt_id = await client.queue(graph(color=0x123456, prefix="order"), "order")
        events = without_status(await events_until_done(ws, prompt_id))
    names = [(name, data.get("node") if name in ("executing", "executed") else None) for name, data in events]
    assert names == [
        ("execution_start", None),
        ("execution_cached", None),
        ("executing", "1"),
        ("executing", "2"),
        ("executed", "2"),
        ("execution_success", None),
        ("executing", None),
    ]
    assert all(data["prompt_id"] == prompt_id for _, data in events)


async def test_second_identical_prompt_is_fully_cached_but_still_reports_outputs(server: Server) -> None:
    prompt = graph(color=0x00FF00, prefix="cached")
    async with connect(server) as client, client.websocket("cache") as ws:
        first = await client.queue(prompt, "cache")
        await events_until_done(ws, first)
        second = await client.queue(prompt, "cache")
        events = without_status(await events_until_done(ws, second))
    by_name = {name: data for name, data in events}
    assert sorted(by_name["execution_cached"]["nodes"]) == ["1", "2"]
    assert [name for name, _ in events].count("executing") == 1  # only the final node-None one
    assert by_name["executed"]["output"]["images"][0]["filename"] == "cached_00001_.png"


async def test_events_go_to_the_submitting_client_or_everyone(server: Server) -> None:
    async with connect(server) as client, client.websocket("alice") as alice, client.websocket("bob") as bob:
        await alice.receive_json(), await bob.receive_json()
        mine = await client.queue(graph(color=1, prefix="alice"), "alice")
        assert any(name == "executed" for name, _ in await events_until_done(alice, mine))
        everyone = await client.queue(graph(color=2, prefix="all"))
        bob_events = await events_until_done(bob, everyone)
    assert not any(data.get("prompt_id") == mine for name, data in bob_events if name != "binary")
    assert ("execution_start", everyone) in [(n, d.get("prompt_id")) for n, d in bob_events]


async def test_preview_arrives_as_binary_frame(server: Server) -> None:
    prompt = {
        "1": {"class_type": "SendPreview", "inputs": {"value": float(uuid.uuid4().int % 1000)}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }
    async with connect(server) as client, client.websocket("preview") as ws:
        events = await events_until_done(ws, await client.queue(prompt, "preview"))
    frames = [data for name, data in events if name == "binary"]
    assert frames == [struct.pack(">II", 1, 2) + TINY_PNG]


async def test_node_info_and_listing_routes(server: Server) -> None:
    async with connect(server) as client:
        info = await client.get("/object_info")
        assert info["EmptyImage"]["input"]["required"]["width"][0] == "INT"
        assert (await client.get("/api/object_info/SaveImage")) == {"SaveImage": info["SaveImage"]}
        assert (await client.get("/object_info/NoSuchNode")) == {}
        assert "checkpoints" in await client.get("/models")
        assert "loom_default.safetensors" in await client.get("/models/checkpoints")  # the shipped model
        await client.get("/models/nope", status=404)
        assert (await client.get("/embeddings")) == []
        # the example pack in custom_nodes/ ships a front-end script
        assert (await client.get("/extensions")) == ["/extensions/loom_toolbox/toolbox.js"]
        stats = await client.get("/system_stats")
        assert {"os", "ram_total", "python_version"} <= set(stats["system"]) and stats["devices"]
        assert (await client.get("/features"))["max_upload_size"] > 0
        await client.post("/free", {"free_memory": True, "unload_models": True})
        assert (await client.get("/api/prompt")) == {"exec_info": {"queue_remaining": 0}}
