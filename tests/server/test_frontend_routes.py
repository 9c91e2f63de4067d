"""The routes ComfyUI's official front end calls, on a real server started with `--front-end comfy`:
their shapes, user data confined to the user's folder, settings kept across a restart."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.server.conftest import Server, connect, events_until_done, graph, start_server, waiting
from tests.server.server_nodes import TINY_PNG

pytest.importorskip("comfyui_frontend_package", reason="pinned in requirements.txt")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("comfy_front_end"), "--front-end", "comfy")
    yield running
    running.stop()


async def test_page_and_core_extensions_are_the_official_front_end(comfy: Server) -> None:
    async with connect(comfy) as client:
        page = await client.get("/")
        assert "<!doctype html>" in page.lower() and "comfy" in page.lower()
        listed = await client.get("/api/extensions")
        core = [url for url in listed if url.startswith("/extensions/core/")]
        assert core, "the front end's own extensions are listed, as ComfyUI lists them"
        # The pack route (/extensions/{pack}/{path}) must not hide the front end's own files.
        script = await client.get(core[0])
        assert isinstance(script, str) and script.strip()


async def test_boot_routes_answer_with_comfyuis_shapes(comfy: Server) -> None:
    async with connect(comfy) as client:
        for prefix in ("", "/api"):
            assert await client.get(prefix + "/users") == {"storage": "server", "migrated": False}
            assert await client.get(prefix + "/settings") == {}
            assert await client.get(prefix + "/settings/Comfy.Unset") is None
            assert await client.get(prefix + "/global_subgraphs") == {}
            assert await client.get(prefix + "/node_replacements") == {}
            assert await client.get(prefix + "/workflow_templates") == {}
        i18n = await client.get("/api/i18n")
        encode = i18n["en"]["nodeDefs"]["CLIPTextEncode"]
        assert encode["display_name"] == "CLIP Text Encode (Prompt)" and encode["description"]
        folders = await client.get("/api/experiment/models")
        names = [f["name"] for f in folders]
        assert "checkpoints" in names and "custom_nodes" not in names
        assert all(isinstance(f["folders"], list) for f in folders)
        models = await client.get("/api/experiment/models/checkpoints")
        shipped = next(m for m in models if m["name"] == "loom_default.safetensors")
        assert set(shipped) == {"name", "pathIndex", "modified", "created", "size"}
        assert shipped["pathIndex"] == 0 and shipped["size"] > 0
        await client.get("/api/experiment/models/nonsense", status=404)
        paths = await client.get("/internal/folder_paths")
        assert isinstance(paths["checkpoints"], list) and "custom_nodes" in paths
        assert isinstance(await client.get("/internal/logs"), str)
        raw = await client.get("/internal/logs/raw")
        assert isinstance(raw["entries"], list) and set(raw["size"]) == {"cols", "rows"}
        await client.get("/internal/files/elsewhere", status=400)
        assert isinstance(await client.get("/templates/index.json"), list)


async def test_view_metadata_reads_the_safetensors_header(comfy: Server) -> None:
    async with connect(comfy) as client:
        metadata = await client.get("/api/view_metadata/checkpoints?filename=loom_default.safetensors")
        assert isinstance(metadata, dict) and metadata
        await client.get("/api/view_metadata/checkpoints?filename=missing.safetensors", status=404)
        await client.get("/api/view_metadata/checkpoints?filename=../../etc/passwd", status=404)


async def test_user_data_round_trip(comfy: Server) -> None:
    async with connect(comfy) as client:
        await client.get("/api/userdata?dir=workflows", status=404)
        saved = await client.post(
            "/api/userdata/workflows%2Fmine.json?overwrite=false&full_info=true", data=b'{"nodes": []}'
        )
        assert saved["path"] == "workflows/mine.json" and saved["size"] == 13
        assert set(saved) == {"path", "size", "modified", "created"}
        await client.post("/api/userdata/workflows%2Fmine.json?overwrite=false", data=b"{}", status=409)
        assert await client.get("/api/userdata?dir=workflows") == ["mine.json"]
        assert await client.get("/api/userdata?dir=workflows&split=true") == [["mine.json", "mine.json"]]
        assert await client.get("/api/userdata/workflows%2Fmine.json") == {"nodes": []}
        moved = await client.post("/api/userdata/workflows%2Fmine.json/move/workflows%2Frenamed.json")
        assert moved == "workflows/renamed.json"
        tree = await client.get("/api/v2/userdata")
        assert {"name": "workflows", "path": "workflows", "type": "directory"} in tree
        entry = next(e for e in tree if e["path"] == "workflows/renamed.json")
        assert entry["type"] == "file" and entry["size"] == 13
        async with client.session.delete(comfy.url + "/api/userdata/workflows%2Frenamed.json") as response:
            assert response.status == 204
        await client.get("/api/userdata/workflows%2Frenamed.json", status=404)
        assert (comfy.base / "user" / "default" / "workflows").is_dir()


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Fsecret.txt", "%2Fetc%2Fpasswd", "..%2Fother_user%2Fx.json", "a%00b", "%252e%252e%252fx"],
)
async def test_user_data_paths_cannot_leave_the_users_folder(comfy: Server, name: str) -> None:
    (comfy.base / "user" / "secret.txt").parent.mkdir(parents=True, exist_ok=True)
    (comfy.base / "user" / "secret.txt").write_text("keep out")
    async with connect(comfy) as client:
        for method in ("GET", "POST", "DELETE"):
            async with client.session.request(method, f"{comfy.url}/api/userdata/{name}", data=b"x") as r:
                assert r.status in (400, 403), f"{method} {name}: {r.status}"
        async with client.session.get(f"{comfy.url}/api/userdata", params={"dir": "../.."}) as r:
            assert r.status in (400, 403)
        async with client.session.get(f"{comfy.url}/api/v2/userdata", params={"path": "../.."}) as r:
            assert r.status in (400, 403)
        async with client.session.post(f"{comfy.url}/api/userdata/ok.json/move/{name}") as r:
            assert r.status in (400, 403, 404)
    assert (comfy.base / "user" / "secret.txt").read_text() == "keep out"


async def test_user_files_have_a_size_limit(comfy: Server) -> None:
    async with connect(comfy) as client:
        await client.post("/api/userdata/big.bin", data=b"x" * (50 * 2**20 + 1), status=413)
    assert not (comfy.base / "user" / "default" / "big.bin").exists()


async def test_a_setting_survives_a_restart(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    try:
        async with connect(first) as client:
            await client.post("/api/settings/Comfy.ColorPalette", "light")
            await client.post("/api/settings", {"Comfy.Sidebar.Location": "right", "Comfy.Count": 3})
    finally:
        first.stop()
    second = start_server(tmp_path)
    try:
        async with connect(second) as client:
            assert await client.get("/api/settings/Comfy.ColorPalette") == "light"
            settings = await client.get("/settings")
            assert settings == {
                "Comfy.ColorPalette": "light",
                "Comfy.Sidebar.Location": "right",
                "Comfy.Count": 3,
            }
    finally:
        second.stop()
    saved = json.loads((tmp_path / "user" / "default" / "comfy.settings.json").read_text())
    assert saved["Comfy.Count"] == 3


async def test_multi_user_keeps_each_users_settings_apart(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--multi-user")
    try:
        async with connect(server) as client:
            alice = await client.post("/api/users", {"username": "alice"})
            assert alice.startswith("alice_")
            await client.post("/api/users", {"username": "alice"}, status=400)
            listed = await client.get("/api/users")
            assert listed == {"storage": "server", "users": {alice: "alice"}}
            await client.post("/api/settings/Comfy.X", 1, headers={"comfy-user": alice})
            assert await client.get("/api/settings", headers={"comfy-user": alice}) == {"Comfy.X": 1}
            await client.get("/api/settings", headers={"comfy-user": "mallory"}, status=403)
    finally:
        server.stop()


async def test_jobs_accept_cancelled_and_cancel_pending_and_running_jobs(comfy: Server) -> None:
    release = comfy.base / "release-jobs"
    async with connect(comfy) as client, client.websocket("jobs") as ws:
        running = await client.queue(waiting(release), "jobs")
        await client.wait_running(running)
        pending = await client.queue(graph(prefix="never"), "jobs")
        answer = await client.post("/api/jobs/cancel", {"job_ids": [pending, "no-such-job"]})
        assert answer == {"cancelled": [pending]}
        await client.post(f"/api/jobs/{running}/cancel")
        await events_until_done(ws, running)
        listed = await client.get("/api/jobs?status=completed,failed,cancelled")
        assert [(j["id"], j["status"]) for j in listed["jobs"]] == [(running, "cancelled")]
        assert (await client.get(f"/api/jobs/{running}"))["status"] == "cancelled"
        await client.post(f"/api/jobs/{running}/cancel", status=404)
        assert not list((comfy.base / "output").glob("never*"))


async def test_mask_upload_puts_the_masks_alpha_on_the_original(comfy: Server) -> None:
    from PIL import Image

    original = Image.new("RGB", (4, 4), (200, 10, 10))
    original.save(comfy.base / "input" / "photo.png")
    mask = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    mask.putpixel((1, 1), (0, 0, 0, 255))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    form = aiohttp.FormData()
    form.add_field("image", buffer.getvalue(), filename="clipspace-mask.png", content_type="image/png")
    form.add_field("original_ref", json.dumps({"filename": "photo.png", "type": "input", "subfolder": ""}))
    form.add_field("type", "input")
    form.add_field("subfolder", "clipspace")
    async with connect(comfy) as client:
        answer = await client.post("/api/upload/mask", data=form)
        assert answer == {"name": "clipspace-mask.png", "subfolder": "clipspace", "type": "input"}
        escape = aiohttp.FormData()
        escape.add_field("image", TINY_PNG, filename="x.png", content_type="image/png")
        escape.add_field("original_ref", json.dumps({"filename": "../../etc/passwd", "type": "input"}))
        await client.post("/api/upload/mask", data=escape, status=400)
    with Image.open(comfy.base / "input" / "clipspace" / "clipspace-mask.png") as saved:
        assert saved.mode == "RGBA" and saved.getpixel((1, 1)) == (200, 10, 10, 255)
        assert saved.getpixel((0, 0))[3] == 0


async def test_front_end_root_serves_any_built_front_end(tmp_path: Path) -> None:
    page = tmp_path / "my-front-end"
    (page / "assets").mkdir(parents=True)
    (page / "index.html").write_text("<!doctype html><title>mine</title>")
    (page / "assets" / "app.js").write_text("console.log('mine')")
    server = start_server(tmp_path, "--front-end-root", str(page))
    try:
        async with connect(server) as client:
            assert "<title>mine</title>" in await client.get("/")
            assert "console.log" in await client.get("/assets/app.js")
            assert (await client.get("/api/prompt"))["exec_info"]["queue_remaining"] == 0
            await client.get("/assets/../../secret", status=404)
    finally:
        server.stop()


def test_front_end_root_without_index_is_refused_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.server.conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--front-end-root", str(tmp_path), "--port", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2 and "no index.html" in result.stderr
