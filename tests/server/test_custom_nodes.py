"""Custom node packs through the real server: loading at start-up, their status, front-end files,
their own routes and messages, and ComfyUI's execution semantics over HTTP and the websocket."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import Server, connect, events_until_done, start_server

PACKS = Path(__file__).resolve().parents[1] / "packs"
PACK = PACKS / "conformance_pack"


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


@pytest.fixture(scope="module")
def pack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose --extra-model-paths-config names a custom_nodes folder with good and broken packs."""
    base = tmp_path_factory.mktemp("packs_server")
    packs = base / "more_nodes"
    for name in ("conformance_pack", "comfy_surface_pack", "v3_pack"):
        shutil.copytree(PACKS / name, packs / name, ignore=shutil.ignore_patterns("__pycache__"))
    (packs / "broken_syntax.py").write_text("def broken(:\n")
    (packs / "skipped.disabled").mkdir()
    (base / "extra_model_paths.yaml").write_text("loom:\n    base_path: .\n    custom_nodes: more_nodes\n")
    server = start_server(base, "--extra-model-paths-config", str(base / "extra_model_paths.yaml"))
    yield server
    server.stop()


async def test_pack_status_is_published(pack_server: Server) -> None:
    async with connect(pack_server) as client:
        packs = {p["name"]: p for p in await client.get("/api/custom_nodes")}
    assert (
        packs["conformance_pack"]["status"] == "loaded"
        and "TestLazyMix" in packs["conformance_pack"]["nodes"]
    )
    assert packs["loom_toolbox"]["status"] == "loaded"
    assert packs["broken_syntax"]["status"] == "failed" and "SyntaxError" in packs["broken_syntax"]["error"]
    assert "skipped" not in packs and "skipped.disabled" not in packs


async def test_pack_report_carries_warnings_and_v3_nodes(pack_server: Server) -> None:
    async with connect(pack_server) as client:
        packs = {p["name"]: p for p in await client.get("/custom_nodes")}
        info = await client.get("/object_info/V3Repeat")
    surface = packs["comfy_surface_pack"]
    assert surface["status"] == "loaded" and "SurfacePrefixedSave" in surface["nodes"]
    assert sorted(surface["warnings"]) == ["SurfaceLax", "SurfaceNote"] and surface["node_errors"] == {}
    assert packs["v3_pack"]["nodes"] == ["V3Repeat", "V3ShowText", "V3LazyPick", "V3Preview"]
    assert info["V3Repeat"]["display_name"] == "Repeat Text (V3)"
    assert info["V3Repeat"]["python_module"] == "custom_nodes.v3_pack"


async def test_routes_added_at_import_see_the_queue(pack_server: Server) -> None:
    async with connect(pack_server) as client:
        assert await client.get("/surface/supports") == {"supports": ["custom_nodes_from_web"]}
        assert await client.get("/surface/queue") == {"remaining": 0, "pending": 0, "running": 0}


async def test_web_directory_is_served_under_extensions(pack_server: Server) -> None:
    async with connect(pack_server) as client:
        scripts = await client.get("/extensions")
        assert "/extensions/conformance_pack/conformance.js" in scripts
        assert "/extensions/loom_toolbox/toolbox.js" in scripts
        assert "conformance pack loaded" in await client.get("/extensions/conformance_pack/conformance.js")
        await client.get("/extensions/conformance_pack/..%2F__init__.py", status=403)
        await client.get("/extensions/conformance_pack/missing.js", status=404)
        await client.get("/extensions/broken_syntax/x.js", status=404)


async def test_pack_routes_and_messages(pack_server: Server) -> None:
    async with connect(pack_server) as client:
        assert await client.get("/conformance/ping") == {"pong": True}
        prompt = {"1": node("StubFloat", value=4.0), "2": node("TestMessage", value=["1", 0])}
        prompt["3"] = node("TestShow", value=["2", 0])
        async with client.websocket("messages") as ws:
            prompt_id = await client.queue(prompt, client_id="messages")
            events = await events_until_done(ws, prompt_id)
    assert ("conformance.message", {"node": "2", "value": 4.0}) in events


async def test_pack_on_prompt_handler_rewrites_submissions(pack_server: Server) -> None:
    prompt = {"1": node("TestAlias", value=2.0), "2": node("TestShow", value=["1", 0])}
    async with connect(pack_server) as client, client.websocket("alias") as ws:
        prompt_id = await client.queue(prompt, client_id="alias")
        await events_until_done(ws, prompt_id)
        history = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    assert history["outputs"]["2"] == {"values": [2.0]}


async def test_lazy_branch_never_runs_over_the_websocket(pack_server: Server) -> None:
    prompt = {
        "1": node("StubFloat", value=10.0),
        "2": node("StubFloat", value=20.0),
        "3": node("TestLazyMix", a=["1", 0], b=["2", 0], t=0.0),
        "4": node("TestShow", value=["3", 0]),
    }
    async with connect(pack_server) as client, client.websocket("lazy") as ws:
        prompt_id = await client.queue(prompt, client_id="lazy")
        events = await events_until_done(ws, prompt_id)
        history = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    ran = [data["node"] for name, data in events if name == "executing" and data["node"]]
    assert ran == ["3", "1", "3", "4"]  # staged, asks for input a only, staged again
    assert history["outputs"]["4"] == {"values": [10.0]}


async def test_for_loop_and_dynamic_cycle_over_http(pack_server: Server) -> None:
    loop = {
        "1": node("StubFloat", value=1.0),
        "2": node("TestForLoopOpen", remaining=3, value=["1", 0]),
        "3": node("TestScale", value=["2", 2], factor=0.5),
        "4": node("TestForLoopClose", flow_control=["2", 0], value=["3", 0]),
        "5": node("TestShow", value=["4", 0]),
    }
    cycle = {"1": node("StubFloat", value=1.0), "2": node("TestDynamicCycle", value=["1", 0])}
    cycle["3"] = node("TestShow", value=["2", 0])
    async with connect(pack_server) as client, client.websocket("flow") as ws:
        loop_id = await client.queue(loop, client_id="flow")
        await events_until_done(ws, loop_id)
        cycle_id = await client.queue(cycle, client_id="flow")
        events = await events_until_done(ws, cycle_id)
        loop_history = (await client.get(f"/history/{loop_id}"))[loop_id]
    assert loop_history["outputs"]["5"] == {"values": [0.125]}
    errors = [data for name, data in events if name == "execution_error"]
    assert errors[0]["node_id"] == "2" and errors[0]["exception_type"] == "graph.DependencyCycleError"


async def test_async_nodes_run_in_parallel_in_the_server(pack_server: Server) -> None:
    prompt: dict[str, Any] = {"1": node("StubFloat", value=1.0)}
    for i in range(3):
        prompt[f"1{i}"] = node("TestSleep", value=["1", 0], seconds=1.0)
        prompt[f"2{i}"] = node("TestShow", value=[f"1{i}", 0])
    async with connect(pack_server) as client, client.websocket("sleep") as ws:
        started = time.perf_counter()
        prompt_id = await client.queue(prompt, client_id="sleep")
        events = await events_until_done(ws, prompt_id)
    assert time.perf_counter() - started < 2.5
    assert any(name == "execution_success" for name, _ in events)


async def test_packs_can_be_disabled(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--disable-all-custom-nodes")
    try:
        async with connect(server) as client:
            assert await client.get("/api/custom_nodes") == []
            assert "LazySwitch" not in await client.get("/object_info")
    finally:
        server.stop()
