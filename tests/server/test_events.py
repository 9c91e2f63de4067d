"""Events as ComfyUI sends them: progress, previews and progress_state go only to the prompt's client;
no previews unless a preview method is on; a console that says what happens, or keeps quiet."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.nodes.sd_fixtures import text_to_image
from tests.server.conftest import Client, Event, Server, connect, events_until_done, graph, start_server

SHIPPED = "loom_default.safetensors"
SEEDS = itertools.count(1000)
PER_CLIENT = ("progress", "progress_state", "executing", "executed", "binary")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server as `make run` starts it: the shipped model, ComfyUI's default --preview-method none."""
    running = start_server(tmp_path_factory.mktemp("events"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def previewing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("previews"), "--preview-method", "auto")
    yield running
    running.stop()


async def drain(ws: aiohttp.ClientWebSocketResponse, seconds: float = 0.5) -> list[Event]:
    """Whatever arrives within `seconds`."""
    events: list[Event] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if message.type == aiohttp.WSMsgType.BINARY:
            events.append(("binary", message.data))
        elif message.type == aiohttp.WSMsgType.TEXT:
            event = json.loads(message.data)
            events.append((event["type"], event["data"]))
        else:
            break
    return events


async def run_watched(
    client: Client, owner: str, watcher: str, **body: Any
) -> tuple[list[Event], list[Event]]:
    """Queue the shipped model's default graph as `owner`; what the owner and a bystander saw."""
    async with client.websocket(owner) as mine, client.websocket(watcher) as other:
        # A fresh seed each time: a repeated prompt would be served from the cache, unsampled.
        prompt_id = await client.queue(text_to_image(SHIPPED, seed=next(SEEDS), steps=4), owner, **body)
        seen = await events_until_done(mine, prompt_id, timeout=120)
        return seen, await drain(other)


def names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


async def test_no_previews_by_default_and_nothing_for_other_clients(shipped: Server) -> None:
    async with connect(shipped) as client:
        seen, bystander = await run_watched(client, "owner", "bystander")
    assert "progress" in names(seen) and "progress_state" in names(seen)
    assert "binary" not in names(seen), "--preview-method none sends no previews"
    assert not [n for n in names(bystander) if n in PER_CLIENT], names(bystander)


async def test_a_prompt_may_ask_for_previews_and_only_its_client_gets_them(shipped: Server) -> None:
    async with connect(shipped) as client:
        body = {"extra_data": {"preview_method": "latent2rgb"}}
        seen, bystander = await run_watched(client, "asker", "neighbour", **body)
    frames = [data for name, data in seen if name == "binary"]
    assert frames and all(frame[:4] == b"\x00\x00\x00\x01" for frame in frames)
    assert not [n for n in names(bystander) if n in PER_CLIENT], names(bystander)


async def test_preview_method_flag_and_a_prompt_that_turns_it_off(previewing: Server) -> None:
    async with connect(previewing) as client:
        seen, _ = await run_watched(client, "flagged", "quiet")
        assert "binary" in names(seen)
        seen, _ = await run_watched(client, "flagged", "quiet", extra_data={"preview_method": "none"})
        assert "binary" not in names(seen)


async def test_progress_state_has_comfyuis_shape(shipped: Server) -> None:
    async with connect(shipped) as client:
        seen, _ = await run_watched(client, "states", "nobody", extra_data={"preview_method": "none"})
    states = [data for name, data in seen if name == "progress_state"]
    prompt_id = seen[-1][1]["prompt_id"]
    assert states and all(s["prompt_id"] == prompt_id for s in states)
    fields = {
        "value",
        "max",
        "state",
        "node_id",
        "prompt_id",
        "display_node_id",
        "parent_node_id",
        "real_node_id",
    }
    for state in states:
        for node_id, node in state["nodes"].items():
            assert set(node) == fields and node["node_id"] == node_id
            assert node["state"] in ("running", "finished", "error")
    sampling = [s["nodes"]["3"] for s in states if s["nodes"].get("3", {}).get("state") == "running"]
    assert any(node["max"] == 4 for node in sampling), "the sampler's steps show as value/max"
    final = states[-1]["nodes"]
    assert final["9"]["state"] == "finished" and final["3"]["state"] == "finished"


async def test_comfy_api_simplified_style_client_gets_the_saved_image(previewing: Server) -> None:
    """queue_and_wait_images: queue, wait for `executing` with node None, read /history, fetch /view."""
    from PIL import Image

    async with connect(previewing) as client, client.websocket("simple") as ws:
        prompt_id = await client.queue(text_to_image(SHIPPED, seed=next(SEEDS), steps=3), "simple")
        async with asyncio.timeout(120):
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue  # previews: this client does not collect them
                event = json.loads(message.data)
                if event["type"] == "executing" and event["data"]["node"] is None:
                    break
        outputs = (await client.get(f"/history/{prompt_id}"))[prompt_id]["outputs"]
        images = [image for output in outputs.values() for image in output.get("images", [])]
        assert [image["type"] for image in images] == ["output"]
        async with client.session.get(f"{previewing.url}/view", params=images[0]) as response:
            data = await response.read()
    with Image.open(io.BytesIO(data)) as saved:
        assert saved.format == "PNG" and saved.size == (64, 64)


async def test_console_says_got_prompt_and_how_long_it_took(shipped: Server) -> None:
    async with connect(shipped) as client, client.websocket("console") as ws:
        prompt_id = await client.queue(text_to_image(SHIPPED, seed=next(SEEDS), steps=2), "console")
        await events_until_done(ws, prompt_id, timeout=120)
        await asyncio.sleep(0.2)
        console = "".join(shipped.console)
        assert "got prompt" in console
        assert any(
            line.startswith("Prompt executed in ") and line.strip().endswith(" seconds")
            for line in shipped.console
        )
        logs = await client.get("/internal/logs")
        assert "got prompt" in logs


async def test_quiet_server_prints_warnings_but_no_prompt_lines(tmp_path: Path) -> None:
    broken = tmp_path / "packs" / "broken_pack"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('needs a library that is not installed')\n")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"mine:\n    custom_nodes: {tmp_path / 'packs'}\n")
    server = start_server(tmp_path, "--quiet", "--extra-model-paths-config", str(config))
    try:
        async with connect(server) as client, client.websocket("hush") as ws:
            prompt_id = await client.queue(graph(output="PreviewImage"), "hush")
            await events_until_done(ws, prompt_id)
            await asyncio.sleep(0.2)
    finally:
        server.stop()
    console = server.startup + "".join(server.console)
    assert "Cannot load custom node pack" in server.startup and "broken_pack" in server.startup
    assert "got prompt" not in console and "Prompt executed" not in console
    assert "Import times" not in console, "--quiet drops INFO lines"
