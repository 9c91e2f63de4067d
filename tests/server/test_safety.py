"""Every safety rule with its attack: origins, Host names, tokens, folders, uploads, bad input."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from yarl import URL

from engine.server.config import ServerConfig
from engine.server.security import json_errors
from tests.server.conftest import Server, connect, free_port, graph, start_server

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("guarded"), "--token", TOKEN, "--max-upload-size", "0.25")
    yield running
    running.stop()


def png(color: tuple[int, int, int] = (255, 0, 0), size: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(size: int) -> bytes:
    """A PNG that does not compress: size² × 3 bytes of noise."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def raw_upload(filename: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body with the file name exactly as given (aiohttp's client would escape it)."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="' + filename.encode() + b'"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png() + b"\r\n--b--\r\n"
    )
    return body, {"Content-Type": "multipart/form-data; boundary=b"}


def upload_form(data: bytes, filename: str, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


async def test_cross_origin_writes_are_refused(server: Server) -> None:
    body = {"prompt": graph(prefix="origin")}
    async with connect(server) as client:
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}"):
            await client.post("/prompt", body, status=403, headers={"Origin": origin})
            await client.post("/queue", {"clear": True}, status=403, headers={"Origin": origin})
        await client.post("/prompt", body, headers={"Origin": f"http://127.0.0.1:{server.port}"})
        await client.get("/queue", headers={"Origin": "http://evil.example"})  # reads carry no effect
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.session.ws_connect(f"{server.url}/ws", headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
        await client.wait_queue_empty()


async def test_dns_rebinding_host_is_refused(server: Server) -> None:
    async with connect(server) as client:
        attack = {
            "Host": f"rebind.evil.example:{server.port}",
            "Origin": f"http://rebind.evil.example:{server.port}",
        }
        await client.post("/prompt", {"prompt": graph()}, status=403, headers=attack)
        await client.get("/history", status=403, headers={"Host": "evil.example"})
        await client.get("/prompt", headers={"Host": f"localhost:{server.port}"})


async def test_token_is_required_when_configured(guarded: Server) -> None:
    async with connect(guarded) as client:
        await client.get("/queue", status=401)
        await client.get("/queue", status=401, headers={"Authorization": "Bearer wrong"})
        await client.get("/queue", headers={"Authorization": f"Bearer {TOKEN}"})
        await client.get(f"/queue?token={TOKEN}")
        await client.post("/prompt", {"prompt": graph()}, status=401)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await client.session.ws_connect(f"{guarded.url}/ws")
        async with client.session.ws_connect(f"{guarded.url}/ws?token={TOKEN}") as ws:
            assert (await ws.receive_json())["type"] == "status"
    assert "?token=" + TOKEN in guarded.ready_line


def test_listening_beyond_loopback_generates_a_token(tmp_path: Path) -> None:
    from engine.folders import Folders

    public = ServerConfig(Folders.under(tmp_path), tmp_path / "q.db", listen="0.0.0.0")
    token = public.require_token()
    assert token and len(token) >= 24 and public.require_token() == token
    assert ServerConfig(Folders.under(tmp_path), tmp_path / "q.db").require_token() is None


async def test_view_stays_inside_its_folders(server: Server) -> None:
    secret = server.base / "secret.txt"
    secret.write_text("top secret")
    (server.base / "output" / "escape.png").symlink_to(secret)
    attacks = [
        "filename=../secret.txt",
        "filename=secret.txt&subfolder=..",
        "filename=secret.txt&subfolder=../..&type=output",
        f"filename={secret}",
        "filename=..%2Fsecret.txt",
        "filename=%2E%2E%2Fsecret.txt",
        "filename=secret.txt&subfolder=%2E%2E",
        "filename=a%00.png",
        "filename=escape.png",
        "filename=secret.txt&type=../",
        "filename=passwd&subfolder=%2Fetc",
    ]
    async with connect(server) as client:
        for query in attacks:
            async with client.session.get(URL(f"{server.url}/view?{query}", encoded=True)) as response:
                assert 400 <= response.status < 500, query
                assert "top secret" not in await response.text()
        await client.get("/view", status=400)
        await client.get("/view?filename=missing.png", status=404)


async def test_view_serves_non_images_as_downloads(server: Server) -> None:
    (server.base / "output" / "page.html").write_text("<script>alert(1)</script>")
    url = f"{server.url}/view?filename=page.html"
    async with connect(server) as client, client.session.get(url) as response:
        assert response.status == 200 and response.content_type == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment")


async def test_view_previews_and_channels(server: Server) -> None:
    Image.new("RGBA", (4, 4), (10, 20, 30, 40)).save(server.base / "output" / "alpha.png")
    async with connect(server) as client:
        for query, content_type in (
            ("preview=webp;90", "image/webp"),
            ("preview=jpeg;50", "image/jpeg"),
            ("channel=rgb", "image/png"),
            ("channel=a", "image/png"),
        ):
            async with client.session.get(f"{server.url}/view?filename=alpha.png&{query}") as response:
                assert response.status == 200 and response.content_type == content_type, query
        await client.get("/view?filename=alpha.png&preview=gif;5", status=400)
        await client.get("/view?filename=alpha.png&preview=webp;abc", status=400)
        await client.get("/view?filename=alpha.png&channel=x", status=400)


async def test_upload_names_folders_and_content(guarded: Server) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(guarded, headers=headers) as client:
        first = await client.post("/upload/image", data=upload_form(png(), "pic.png"))
        assert first == {"name": "pic.png", "subfolder": "", "type": "input"}
        same = await client.post("/upload/image", data=upload_form(png(), "pic.png"))
        other = await client.post("/upload/image", data=upload_form(png((0, 0, 255)), "pic.png"))
        assert same["name"] == "pic.png" and other["name"] == "pic (1).png"
        replaced = await client.post(
            "/upload/image", data=upload_form(png((0, 9, 9)), "pic.png", overwrite="true")
        )
        assert replaced["name"] == "pic.png"
        nested = await client.post(
            "/upload/image", data=upload_form(png(), "n.png", subfolder="a/b", type="temp")
        )
        assert nested == {"name": "n.png", "subfolder": "a/b", "type": "temp"}
        assert (guarded.base / "temp" / "a" / "b" / "n.png").is_file()
        for name in ("../evil.png", "/tmp/evil.png", "..", "a\0.png"):
            body, form_headers = raw_upload(name)
            await client.post("/upload/image", data=body, headers=form_headers, status=400)
        for name, fields in (
            ("x.png", {"subfolder": "../.."}),
            ("x.png", {"subfolder": "/tmp"}),
            ("x.png", {"type": "models"}),
        ):
            await client.post("/upload/image", data=upload_form(png(), name, **fields), status=400)
        await client.post("/upload/image", data=upload_form(b"<?php evil(); ?>", "shell.png"), status=400)
        await client.post(
            "/upload/image", data=upload_form(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "t.png"), status=400
        )
        await client.post("/upload/image", data=upload_form(noise_png(400), "big.png"), status=413)
        await client.post("/upload/image", data={"other": "field"}, status=400)
        await client.post("/upload/image", {"image": "json"}, status=400)
    assert not (guarded.base / "evil.png").exists() and not (guarded.base / "input" / "shell.png").exists()


async def test_bad_input_gets_400_with_a_message(server: Server) -> None:
    def empty(**inputs: object) -> dict[str, object]:
        base = {"width": 8, "height": 8, "batch_size": 1, "color": 0}
        return {
            "1": {"class_type": "EmptyImage", "inputs": {**base, **inputs}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }

    cases: list[object] = [
        empty(width=10**9),
        empty(width="wide"),
        empty(height=-1),
        empty(batch_size=None),
        empty(color=[1, 2, 3]),
        {
            "1": {"class_type": "SlowSteps", "inputs": {"steps": -1}},
            "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
        },
        {
            "1": {
                "class_type": "SaveImage",
                "inputs": {"images": ["9", 0], "filename_prefix": "x" * 10_000_000},
            }
        },
        {"1": {"class_type": "NoSuchNode", "inputs": {}}},
        {"1": "not a node"},
        [],
        "text",
        None,
        5,
        {},
    ]
    async with connect(server) as client:
        for prompt in cases:
            answer = await client.post("/prompt", {"prompt": prompt}, status=400)
            assert answer["error"]["message"], prompt if len(str(prompt)) < 300 else "long"
        for body in (b"{not json", b"[1, 2]", b'"text"', b"", b'{"prompt": NaN}', b"\xff\xfe"):
            async with client.session.post(f"{server.url}/prompt", data=body) as response:
                assert response.status == 400 and "error" in await response.json()
        await client.post("/prompt", {"prompt": empty(), "number": "first"}, status=400)
        await client.post("/prompt", {"prompt": empty(), "extra_data": []}, status=400)
        await client.post("/prompt", {"prompt": empty(), "client_id": 5}, status=400)
        await client.post("/prompt", {"prompt": empty(), "prompt_id": "x" * 1000}, status=400)
        await client.post("/queue", {"delete": "all"}, status=400)
        await client.post("/interrupt", {"prompt_id": 3}, status=400)
        async with client.session.post(
            f"{server.url}/prompt", data=b"{" + b" " * (21 << 20) + b"}"
        ) as response:
            assert response.status == 413
        await client.post("/prompt", {"prompt": empty()})
        await client.wait_queue_empty()


async def test_unexpected_errors_become_json_500() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[json_errors])
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/broken") as response,
        ):
            assert response.status == 500
            assert json.loads(await response.text()) == {"error": "internal error: RuntimeError: boom"}
    finally:
        await runner.cleanup()
