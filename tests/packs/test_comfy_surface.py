"""Packs that import ComfyUI's Python surface the way real ones do: the `nodes` module and its
classes, module-level `comfy.*` imports, SaveImage subclasses, the V3 API through
`comfy_entrypoint()`, and declarations that register with a warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.testing import PackHarness

HERE = Path(__file__).parent


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


@pytest.fixture
def surface(loom_pack: Any) -> PackHarness:
    return loom_pack(HERE / "comfy_surface_pack")


@pytest.fixture
def v3(loom_pack: Any) -> PackHarness:
    return loom_pack(HERE / "v3_pack")


def test_pack_importing_comfy_modules_registers_every_node(surface: PackHarness) -> None:
    pack = surface.packs[0]
    assert pack.nodes == [
        "SurfacePrefixedSave", "SurfaceBuiltins", "SurfaceConditioning", "SurfaceLax", "SurfaceNote",
        "SurfaceFolders",
    ]  # fmt: skip
    assert pack.node_errors == {}
    assert sorted(pack.warnings) == ["SurfaceLax", "SurfaceNote"]
    assert "RETURN_NAMES" in pack.warnings["SurfaceLax"][0] and "'unused'" in pack.warnings["SurfaceLax"][1]
    assert "FUNCTION" in pack.warnings["SurfaceNote"][0]


def test_savable_subclass_and_builtins_called_by_function(surface: PackHarness) -> None:
    prompt = {
        "1": node("SurfaceBuiltins", size=4),
        "2": node("SurfacePrefixedSave", images=["1", 0], filename_prefix="ComfyUI"),
    }
    result = surface.run(prompt, extra_data={"extra_pnginfo": {"workflow": {"n": 1}}})
    assert result.status == "success", result.error
    saved = result.outputs["2"]["images"][0]
    assert saved == {"filename": "ComfyUI_surface_00001_.png", "subfolder": "", "type": "output"}
    from PIL import Image

    with Image.open(surface.folders.output / saved["filename"]) as image:
        assert image.size == (4, 4) and image.getpixel((0, 0)) == (0, 255, 255)
        assert '"class_type": "SurfaceBuiltins"' in image.info["prompt"]


def test_lax_declaration_runs_as_in_comfyui(surface: PackHarness) -> None:
    spec = surface.registry.get("SurfaceLax")
    assert spec is not None and [o.name for o in spec.outputs] == ["text"]
    assert surface.run({"1": node("SurfaceLax", text="hi")}).outputs["1"] == {"text": ["HI"]}
    # Setting the input the function does not take fails when the node runs, as it does in ComfyUI.
    failed = surface.run({"1": node("SurfaceLax", text="hi", unused=3)})
    assert failed.status == "error" and "unused" in (failed.error or {}).get("exception_message", "")


def test_node_helpers_and_folder_kinds(surface: PackHarness) -> None:
    prompt = {
        "1": node("SurfaceConditioning", strength=0.25),
        "2": node("SurfaceFolders"),
    }
    result = surface.run(prompt)
    assert result.status == "success", result.error
    assert result.outputs["1"] == {"text": ["0.25|None"]}
    assert result.outputs["2"] == {"text": ["custom_nodes,clip_vision,text_encoders,checkpoints|1"]}


def test_v3_nodes_register_through_the_entrypoint(v3: PackHarness) -> None:
    pack = v3.packs[0]
    assert pack.nodes == ["V3Repeat", "V3ShowText", "V3LazyPick", "V3Preview"] and not pack.warnings
    spec = v3.registry.get("V3Repeat")
    assert spec is not None and spec.display_name == "Repeat Text (V3)" and spec.category == "v3"
    assert [(i.name, i.type, i.section) for i in spec.inputs] == [
        ("text", "STRING", "required"), ("times", "INT", "required"), ("joiner", "COMBO", "required"),
        ("unique_id", "UNIQUE_ID", "hidden"),
    ]  # fmt: skip
    assert [(o.type, o.name) for o in spec.outputs] == [("STRING", "repeated"), ("INT", "length")]
    assert spec.input("times").options == {"default": 2, "min": 1, "max": 10}  # type: ignore[union-attr]


def test_v3_execute_hidden_values_ui_and_async(v3: PackHarness) -> None:
    prompt = {
        "7": node("V3Repeat", text="ab", times=3, joiner="+"),
        "8": node("V3ShowText", text=["7", 0]),
    }
    result = v3.run(prompt)
    assert result.status == "success", result.error
    assert result.outputs["8"] == {"text": ["ab+ab+ab@7"]}


def test_v3_validate_inputs_rejects_before_running(v3: PackHarness) -> None:
    from engine.graph import validate_prompt

    checked = validate_prompt(
        v3.registry,
        {"1": node("V3Repeat", text="a", times=7, joiner="-"), "2": node("V3ShowText", text=["1", 0])},
    )
    assert not checked.ok and "seven is not allowed" in str(checked.node_errors)


def test_v3_lazy_inputs_compute_only_the_chosen_branch(v3: PackHarness) -> None:
    prompt = {
        "1": node("V3Repeat", text="a", times=1, joiner="-"),
        "2": node("V3Repeat", text="b", times=1, joiner="-"),
        "3": node("V3LazyPick", first=False, a=["1", 0], b=["2", 0]),
        "4": node("V3ShowText", text=["3", 0]),
    }
    result = v3.run(prompt)
    assert result.status == "success", result.error
    assert result.outputs["4"] == {"text": ["b@2"]} and "1" not in result.executed


def test_v3_preview_image_writes_to_temp(v3: PackHarness) -> None:
    prompt = {
        "1": node("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "2": node("V3Preview", images=["1", 0]),
    }
    result = v3.run(prompt)
    assert result.status == "success", result.error
    shown = result.outputs["2"]["images"][0]
    assert shown["type"] == "temp" and (v3.folders.temp / shown["filename"]).is_file()


def test_nodes_module_answers_comfyui_names() -> None:
    import nodes
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, common_ksampler, interrupt_processing

    assert NODE_CLASS_MAPPINGS["CLIPTextEncode"] is nodes.CLIPTextEncode
    assert nodes.CLIPTextEncode.FUNCTION == "encode" and nodes.KSampler.FUNCTION == "sample"
    assert nodes.SaveImage.FUNCTION == "save_images" and issubclass(nodes.PreviewImage, nodes.SaveImage)
    assert NODE_DISPLAY_NAME_MAPPINGS["SaveImage"] == "Save Image"
    assert callable(common_ksampler) and callable(interrupt_processing)
    with pytest.raises(AttributeError):
        nodes.NoSuchComfyNode  # noqa: B018 - the attribute access is the test


def test_comfy_extras_modules_expose_loom_builtins() -> None:
    from engine import comfy_compat

    comfy_compat.install()
    from comfy_extras.nodes_primitive import PrimitiveInt
    from comfy_extras.nodes_rebatch import RebatchImages

    assert PrimitiveInt().execute(5) == (5,)
    assert RebatchImages.FUNCTION == "execute"  # a V3 node in ComfyUI 0.3.64: no classic FUNCTION
    with pytest.raises(ImportError, match="CLIPTextEncodeControlnet"):
        from comfy_extras.nodes_cond import CLIPTextEncodeControlnet  # noqa: F401


def test_binary_events_from_packs_become_loom_messages() -> None:
    from PIL import Image

    from engine import comfy_compat
    from engine.comfy_compat.prompt_server import BinaryEventTypes, PromptServer

    comfy_compat.install()
    from comfy_api import feature_flags

    sent: list[tuple[str, Any, str | None]] = []
    server = PromptServer()
    server.bind(server.app, lambda event, data, sid: sent.append((event, data, sid)))
    server.last_node_id = "5"
    server.send_sync(BinaryEventTypes.PREVIEW_IMAGE, ("JPEG", Image.new("RGB", (4, 4)), None), "me")
    server.send_sync(BinaryEventTypes.TEXT, ("5", "half way"), "me")
    assert [(e, s) for e, _, s in sent] == [("preview_image", "me"), ("progress_text", "me")]
    assert sent[0][1]["node"] == "5" and sent[0][1]["image"][:2] == b"\xff\xd8"
    assert sent[1][1] == {"text": "half way", "node": "5"}
    assert not feature_flags.supports_feature(server.sockets_metadata, "me", "supports_preview_metadata")


def test_composite_helper_and_latent_previewer() -> None:
    import torch

    from engine import comfy_compat

    comfy_compat.install()
    from comfy_extras.nodes_mask import composite
    from latent_preview import Latent2RGBPreviewer

    destination = torch.zeros(1, 1, 4, 4)
    mask = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    result = composite(destination, torch.ones(1, 1, 2, 2), 2, 3, mask, multiplier=1)
    assert result is destination and result[0, 0, 3, 2:].tolist() == [1.0, 0.5]
    assert result.sum().item() == 1.5  # the source's second row falls off the bottom
    previewer = Latent2RGBPreviewer([[1.0, 0.0, 0.0]] * 4, [0.0, 0.0, 0.0])
    image_format, image, _ = previewer.decode_latent_to_preview_image("JPEG", torch.ones(1, 4, 8, 8))
    assert image_format == "JPEG" and image.getpixel((0, 0))[0] > 200


def test_prompt_queue_over_loom_store(tmp_path: Path) -> None:
    import asyncio

    from engine.comfy_compat.prompt_queue import PromptQueue
    from engine.queue import PromptStore

    class Worker:
        changes = 0

        def queue_changed(self) -> None:
            Worker.changes += 1

        def free_cache(self) -> None:
            pass

    loop = asyncio.new_event_loop()
    queue, store = PromptQueue(), PromptStore(tmp_path / "q.db")
    assert queue.get_current_queue() == ([], []) and queue.get_tasks_remaining() == 0
    queue.bind(store, Worker(), loop)
    prompt = {"1": node("EmptyImage", width=8, height=8, batch_size=1, color=0)}
    queue.put((5, "a", prompt, {"client_id": "c"}, ["1"]))
    queue.put((6, "b", prompt, {}, ["1"]))
    running, pending = queue.get_current_queue()
    assert (
        running == [] and [item[1] for item in pending] == ["a", "b"] and pending[0][3] == {"client_id": "c"}
    )
    assert queue.delete_queue_item(lambda item: item[1] == "b") and queue.get_tasks_remaining() == 1
    queue.wipe_queue()
    assert queue.get_tasks_remaining() == 0
    loop.run_until_complete(asyncio.sleep(0))
    assert Worker.changes == 4
    store.close()
    loop.close()


def test_execution_module_validates_and_runs(loom_pack: Any) -> None:
    import asyncio

    from engine import comfy_compat

    comfy_compat.install()
    import execution

    prompt = {"1": node("EmptyImage", width=8, height=8, batch_size=1, color=0)}
    prompt["2"] = node("PreviewImage", images=["1", 0])
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("p", prompt, None))
    assert valid and error is None and outputs == ["2"] and node_errors == {}
    bad = asyncio.run(execution.validate_prompt("p", {"1": node("NoSuchNode")}, None))
    assert not bad[0] and bad[1] is not None
    executor = execution.PromptExecutor(None)
    executor.execute(prompt, "p", {}, ["2"])
    assert executor.success and executor.history_result["outputs"]["2"]["images"][0]["type"] == "temp"
