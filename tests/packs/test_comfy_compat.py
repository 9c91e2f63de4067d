"""ComfyUI's module names as packs import them, backed by Loom's folders, context and server."""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine import comfy_compat
from engine.folders import Folders, UnsafePathError
from engine.testing import PackHarness

PACK = Path(__file__).parent / "conformance_pack"


@pytest.fixture
def comfy() -> Any:
    comfy_compat.install()
    return importlib.import_module


def test_folder_paths_follow_loom_folders(comfy: Any, loom_folders: Folders) -> None:
    folder_paths = comfy("folder_paths")
    checkpoints = loom_folders.models["checkpoints"][0]
    checkpoints.mkdir(parents=True)
    (checkpoints / "model.safetensors").write_bytes(b"x")
    (checkpoints / "notes.txt").write_text("x")
    assert folder_paths.get_filename_list("checkpoints") == ["model.safetensors"]
    assert folder_paths.get_full_path("checkpoints", "model.safetensors") == str(
        checkpoints / "model.safetensors"
    )
    assert folder_paths.get_full_path("checkpoints", "missing.safetensors") is None
    with pytest.raises(FileNotFoundError):
        folder_paths.get_full_path_or_raise("checkpoints", "missing.safetensors")
    assert folder_paths.get_output_directory() == str(loom_folders.output) == folder_paths.output_directory
    assert folder_paths.folder_names_and_paths["checkpoints"][0] == [str(checkpoints)]


def test_pack_added_model_folders(comfy: Any, loom_folders: Folders, tmp_path: Path) -> None:
    folder_paths = comfy("folder_paths")
    extra = tmp_path / "ipadapter"
    extra.mkdir()
    (extra / "a.bin").write_bytes(b"x")
    folder_paths.add_model_folder_path("ipadapter", str(extra))
    assert folder_paths.get_folder_paths("ipadapter") == [str(extra)]
    assert folder_paths.get_filename_list("ipadapter") == ["a.bin"]
    folder_paths.folder_names_and_paths["onnx"] = ([str(extra)], {".onnx"})
    assert folder_paths.get_filename_list("onnx") == []


def test_annotated_paths_and_save_path(comfy: Any, loom_folders: Folders) -> None:
    folder_paths = comfy("folder_paths")
    assert folder_paths.get_annotated_filepath("a.png [output]") == str(loom_folders.output / "a.png")
    assert folder_paths.get_annotated_filepath("b.png") == str(loom_folders.input / "b.png")
    assert not folder_paths.exists_annotated_filepath("b.png")
    with pytest.raises(UnsafePathError):
        folder_paths.get_annotated_filepath("../escape.png")
    (loom_folders.output / "shots").mkdir()
    (loom_folders.output / "shots" / "cat_00004_.png").write_bytes(b"")
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        "shots/cat", str(loom_folders.output)
    )
    assert (folder, name, counter, subfolder) == (str(loom_folders.output / "shots"), "cat", 5, "shots")
    with pytest.raises(UnsafePathError):
        folder_paths.get_save_image_path("../../outside", str(loom_folders.output))


def test_progress_bar_and_interrupt_helpers_outside_a_node_do_nothing(comfy: Any) -> None:
    bar = comfy("comfy.utils").ProgressBar(3)
    bar.update(1)
    assert bar.current == 1
    management = comfy("comfy.model_management")
    management.throw_exception_if_processing_interrupted()
    assert management.processing_interrupted() is False
    assert management.get_torch_device().type in ("cpu", "cuda", "mps")


def test_io_types_and_prompt_server(comfy: Any) -> None:
    io = comfy("comfy.comfy_types").IO
    assert io.ANY == "*" and (io.ANY != "IMAGE") is False and io.IMAGE != "LATENT"
    assert isinstance(comfy("server").PromptServer.instance, comfy("server").PromptServer)
    server = comfy("server").PromptServer()
    sent: list[tuple[str, Any, str | None]] = []
    app = web.Application()
    server.bind(app, lambda event, data, sid: sent.append((event, data, sid)))
    server.send_sync("pack.event", {"a": 1}, "client")
    assert sent == [("pack.event", {"a": 1}, "client")]


def test_interrupt_stops_async_nodes(loom_pack: Any) -> None:
    pack: PackHarness = loom_pack(PACK)
    prompt = {
        "1": {"class_type": "StubFloat", "inputs": {"value": 1.0}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 5.0}},
        "3": {"class_type": "TestShow", "inputs": {"value": ["2", 0]}},
    }
    timer = threading.Timer(0.3, pack.executor.interrupt)
    started = time.perf_counter()
    timer.start()
    result = pack.run(prompt)
    assert result.status == "interrupted" and time.perf_counter() - started < 2.0
    assert result.error is not None and result.error["node_id"] == "2"


def test_packs_can_import_max_resolution_from_nodes() -> None:
    from nodes import MAX_RESOLUTION

    assert MAX_RESOLUTION == 16384
