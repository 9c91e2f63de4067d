"""Edge cases of files, names, tokens and cross-site writes: 4xx where documented, never 500."""

from __future__ import annotations

import io
import os
from pathlib import Path

import aiohttp
from PIL import Image

from tests.server.conftest import Server, connect, graph, start_server
from tests.server.small_disk import fill, small_disk


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), color).save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(
    client: aiohttp.ClientSession, server: Server, name: str, data: bytes
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    async with client.post(server.url + "/upload/image", data=form) as response:
        await response.read()
        return response


async def test_view_with_a_symlink_loop_or_an_overlong_name_is_400(server: Server) -> None:
    output = server.base / "output"
    output.mkdir(exist_ok=True)
    os.symlink(output / "loop", output / "loop")
    async with connect(server) as client:
        loop = await client.get("/view?filename=loop", status=400)
        long = await client.get("/view?filename=" + "a" * 300 + ".png", status=400)
        deep = await client.get("/view?filename=x.png&subfolder=" + "/".join(["b" * 200] * 30), status=404)
    assert "cannot be resolved" in loop["error"] and "longer than 255" in long["error"]
    assert "no file" in deep["error"]


async def test_an_upload_whose_renamed_name_would_be_too_long_is_400(server: Server) -> None:
    name = "n" * 250 + ".png"  # 254 bytes; with " (1)" it is 258
    async with aiohttp.ClientSession() as session:
        first = await upload(session, server, name, png((255, 0, 0)))
        second = await upload(session, server, name, png((0, 255, 0)))
        async with session.post(server.url + "/upload/image", data=b"") as response:
            assert response.status == 400
    assert first.status == 200 and second.status == 400


async def test_writes_without_origin_that_a_browser_marks_cross_site_or_sends_as_text_are_refused(
    server: Server,
) -> None:
    body = '{"prompt": {}}'
    async with aiohttp.ClientSession() as session:
        cross = {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}
        async with session.post(server.url + "/prompt", data=body, headers=cross) as response:
            assert response.status == 403
        text = {"Content-Type": "text/plain"}
        async with session.post(server.url + "/prompt", data=body, headers=text) as response:
            assert response.status == 415
        same = {"Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
        async with session.post(server.url + "/prompt", data=body, headers=same) as response:
            assert response.status == 400  # through to validation: no prompt


async def test_the_token_in_the_page_url_becomes_a_cookie_for_the_canvas_assets(tmp_path: Path) -> None:
    guarded = start_server(tmp_path, "--token", "canvas-token")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # IP host
            async with session.get(guarded.url + "/assets/index.js") as response:
                assert response.status == 401
            async with session.get(guarded.url + "/?token=canvas-token") as response:
                assert "loom_token" in response.cookies
                assert response.cookies["loom_token"]["samesite"] == "Strict"
            async with session.get(guarded.url + "/assets/index.js") as response:
                assert response.status in (200, 404)  # past the token check (404 if not built)
            async with session.get(guarded.url + "/queue") as response:
                assert response.status == 200
    finally:
        guarded.stop()


async def test_a_full_output_disk_leaves_no_empty_png(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        server = start_server(tmp_path, "--output-directory", str(disk / "output"))
        try:
            async with connect(server) as client:
                fill(disk)
                big = {
                    **graph(prefix="full"),
                    "1": {
                        "class_type": "EmptyImage",
                        "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0x123456},
                    },
                }
                prompt_id = await client.queue(big)
                await client.wait_queue_empty()
                entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
        finally:
            server.stop()
        assert entry["status"]["status_str"] == "error"
        assert "No space left" in entry["status"]["messages"][-1][1]["exception_message"]
        assert [p.name for p in (disk / "output").iterdir()] == []
