"""GET /embeddings lists the names a prompt can use as `embedding:name`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.conftest import connect, start_server


@pytest.mark.parametrize("route", ["/embeddings", "/api/embeddings"])
async def test_embeddings_are_listed_by_name(tmp_path: Path, route: str) -> None:
    folder = tmp_path / "extra" / "embeddings"
    (folder / "styles").mkdir(parents=True)
    for name in ("easynegative.safetensors", "styles/ink.pt", "old.bin", "README.txt", "preview.png"):
        (folder / name).write_bytes(b"x")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"mine:\n  base_path: {tmp_path / 'extra'}\n  embeddings: embeddings\n")
    server = start_server(tmp_path, "--extra-model-paths-config", str(config))
    try:
        async with connect(server) as client:
            assert await client.get(route) == ["easynegative", "old", "styles/ink"]
    finally:
        server.stop()
