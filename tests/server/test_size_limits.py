"""Every user-controlled size has a limit, and clearing history gives the disk space back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.server.conftest import Server, connect, graph


def database_bytes(base: Path) -> int:
    return sum(p.stat().st_size for p in base.glob("user/loom.db*"))


async def test_clearing_history_shrinks_the_database(server: Server) -> None:
    notes = {"extra_pnginfo": {"workflow": {"notes": "n" * (3 << 20)}}}
    async with connect(server) as client:
        await client.post("/history", {"clear": True})
        for i in range(6):
            await client.queue(graph(color=40 + i, prefix="big"), extra_data=notes)
        await client.wait_queue_empty()
        grown = database_bytes(server.base)
        await client.post("/history", {"clear": True})
        assert await client.get("/history") == {}
    shrunk = database_bytes(server.base)
    assert grown > 18 << 20 and shrunk < grown // 4, (grown, shrunk)


async def test_a_huge_ui_output_is_not_kept_in_history(server: Server) -> None:
    async with connect(server) as client:
        prompt_id = await client.queue({"1": {"class_type": "BigText", "inputs": {"size": 6 << 20}}})
        await client.wait_queue_empty()
        entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    assert entry["status"]["status_str"] == "success"
    assert "over the history entry limit" in entry["outputs"]["1"]["text"][0]


async def test_a_non_image_upload_is_refused_at_its_first_chunk(server: Server) -> None:
    async def send(session: aiohttp.ClientSession) -> int:
        form = aiohttp.FormData()
        form.add_field("image", b"\0" * (40 << 20), filename="x.png", content_type="image/png")
        async with session.post(server.url + "/upload/image", data=form) as response:
            await response.read()
            return response.status

    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(send(session) for _ in range(6)))
    assert statuses == [400] * 6
