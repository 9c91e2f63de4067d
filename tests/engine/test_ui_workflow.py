"""UI-format (litegraph) workflows converted to API prompts, checked against what the frontend queues."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from engine.folders import Folders
from engine.graph import validate_prompt
from engine.registry import NodeRegistry
from engine.ui_workflow import WorkflowConversionError, is_ui_workflow, ui_to_api
from nodes import builtin_registry

FIXTURES = Path(__file__).parent / "fixtures"


class IntConstant:
    """A node with an INT output, to drive a widget that was converted to an input."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, value: int) -> tuple[int]:
        return (value,)


class SeedConventions:
    """`seed` gets a control widget by name, `noise_seed` opts out, `pick` is a combo with one."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "seed": ("INT", {"default": 0}),
                "noise_seed": ("INT", {"default": 0, "control_after_generate": False}),
                "pick": (["a", "b", "c"], {"control_after_generate": True}),
                "tags": ("STRING", {"default": "", "forceInput": True}),
                "label": ("STRING", {"default": "none"}),
            },
            "optional": {"sizes": ("INT", {"default": 1})},
        }

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, **inputs: Any) -> tuple[int]:
        return (0,)


@pytest.fixture(scope="module")
def sd() -> NodeRegistry:
    registry = builtin_registry()
    registry.register(IntConstant, "IntConstant")
    registry.register(SeedConventions, "SeedConventions")
    return registry


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def v04() -> dict[str, Any]:
    return load("default_t2i_v04.json")


def expected() -> dict[str, Any]:
    return load("default_t2i_api.json")


def node_of(workflow: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(n for n in workflow["nodes"] if n["id"] == node_id)


def add_node(workflow: dict[str, Any], node_id: int, node_type: str, **fields: Any) -> dict[str, Any]:
    node = {"id": node_id, "type": node_type, "pos": [0, 0], "size": [200, 60], "flags": {}, "order": 0}
    node.update({"mode": 0, "inputs": [], "outputs": [], "properties": {}, **fields})
    workflow["nodes"].append(node)
    return node


def add_reroute(workflow: dict[str, Any], node_id: int, link: int) -> None:
    inputs = [{"name": "", "type": "*", "link": link}]
    add_node(workflow, node_id, "Reroute", inputs=inputs, outputs=[{"name": "", "type": "*"}])


def relink(workflow: dict[str, Any], link_id: int, origin: int, slot: int) -> None:
    """Point an existing v0.4 link at a new origin."""
    link = next(link for link in workflow["links"] if link[0] == link_id)
    link[1], link[2] = origin, slot


def convert_error(workflow: Any, registry: NodeRegistry) -> WorkflowConversionError:
    with pytest.raises(WorkflowConversionError) as caught:
        ui_to_api(workflow, registry)
    return caught.value


@pytest.mark.parametrize("name", ["default_t2i_v04.json", "default_t2i_v1.json"])
def test_default_text_to_image_workflow(sd: NodeRegistry, name: str, loom_folders: Folders) -> None:
    prompt = ui_to_api(load(name), sd)
    assert prompt == expected()
    checkpoints = loom_folders.models["checkpoints"][0]
    checkpoints.mkdir(parents=True)
    (checkpoints / "v1-5-pruned-emaonly.safetensors").touch()  # validation only lists the folder
    assert validate_prompt(sd, prompt).ok


def test_is_ui_workflow() -> None:
    assert is_ui_workflow(v04()) and is_ui_workflow(load("default_t2i_v1.json"))
    bodies: tuple[Any, ...] = (expected(), {"nodes": []}, {"nodes": {}, "links": []}, None, [], "nodes")
    for body in bodies:
        assert not is_ui_workflow(body)


def test_reroute_chain_is_followed(sd: NodeRegistry) -> None:
    workflow = v04()
    add_reroute(workflow, 10, 8)
    add_reroute(workflow, 11, 10)
    # checkpoint VAE -(8)-> reroute 10 -(10)-> reroute 11 -(11)-> VAEDecode.vae
    next(link for link in workflow["links"] if link[0] == 8)[3:5] = [10, 0]
    workflow["links"] += [[10, 10, 0, 11, 0, "VAE"], [11, 11, 0, 8, 1, "VAE"]]
    node_of(workflow, 8)["inputs"][1]["link"] = 11
    assert ui_to_api(workflow, sd) == expected()


def test_notes_are_dropped(sd: NodeRegistry) -> None:
    workflow = v04()
    add_node(workflow, 12, "Note", widgets_values=["remember the seed"])
    add_node(workflow, 13, "MarkdownNote", widgets_values=["# Hi"])
    assert ui_to_api(workflow, sd) == expected()


def test_muted_node_is_left_out_and_its_consumers_lose_the_input(sd: NodeRegistry) -> None:
    workflow = v04()
    node_of(workflow, 7)["mode"] = 2
    add_node(workflow, 14, "SomePackNode", mode=2)  # muted: its type need not be installed
    want = expected()
    del want["7"], want["3"]["inputs"]["negative"]
    assert ui_to_api(workflow, sd) == want


def add_lora(workflow: dict[str, Any], mode: int) -> None:
    """Checkpoint -> LoraLoader #10 -> KSampler.model and the positive prompt's clip."""
    add_node(
        workflow,
        10,
        "LoraLoader",
        mode=mode,
        inputs=[{"name": "model", "type": "MODEL", "link": 20}, {"name": "clip", "type": "CLIP", "link": 21}],
        outputs=[
            {"name": "MODEL", "type": "MODEL", "links": [1]},
            {"name": "CLIP", "type": "CLIP", "links": [3]},
        ],
        widgets_values=["style.safetensors", 0.8, 0.6],
    )
    workflow["links"] += [[20, 4, 0, 10, 0, "MODEL"], [21, 4, 1, 10, 1, "CLIP"]]
    relink(workflow, 1, 10, 0)
    relink(workflow, 3, 10, 1)


def test_bypassed_node_passes_its_matching_input_through(sd: NodeRegistry) -> None:
    active, bypassed = v04(), v04()
    add_lora(active, 0)
    add_lora(bypassed, 4)
    assert ui_to_api(bypassed, sd) == expected()
    wired = ui_to_api(active, sd)
    assert wired["3"]["inputs"]["model"] == ["10", 0] and wired["6"]["inputs"]["clip"] == ["10", 1]
    assert wired["10"]["inputs"] == {
        "lora_name": "style.safetensors",
        "strength_model": 0.8,
        "strength_clip": 0.6,
        "model": ["4", 0],
        "clip": ["4", 1],
    }


def test_bypassed_node_without_a_matching_input_feeds_nothing(sd: NodeRegistry) -> None:
    workflow = v04()
    node_of(workflow, 8)["mode"] = 4  # VAEDecode has LATENT and VAE inputs; SaveImage wants IMAGE
    prompt = ui_to_api(workflow, sd)
    assert "8" not in prompt and prompt["9"]["inputs"] == {"filename_prefix": "ComfyUI"}


def test_primitive_node_value_feeds_the_seed_widget(sd: NodeRegistry) -> None:
    workflow = v04()
    add_node(
        workflow,
        10,
        "PrimitiveNode",
        title="Seed",
        outputs=[{"name": "INT", "type": "INT", "links": [30], "widget": {"name": "seed"}}],
        widgets_values=[42, "fixed"],
    )
    sampler = node_of(workflow, 3)
    sampler["inputs"].append({"name": "seed", "type": "INT", "link": 30, "widget": {"name": "seed"}})
    workflow["links"].append([30, 10, 0, 3, 4, "INT"])
    want = expected()
    want["3"]["inputs"]["seed"] = 42
    assert ui_to_api(workflow, sd) == want


def test_widget_converted_to_input_uses_the_link(sd: NodeRegistry) -> None:
    workflow = v04()
    add_node(
        workflow,
        10,
        "IntConstant",
        outputs=[{"name": "INT", "type": "INT", "links": [31]}],
        widgets_values=[30],
    )
    sampler = node_of(workflow, 3)
    sampler["inputs"].append({"name": "steps", "type": "INT", "link": 31, "widget": {"name": "steps"}})
    workflow["links"].append([31, 10, 0, 3, 4, "INT"])
    want = expected()
    want["3"]["inputs"]["steps"] = ["10", 0]
    want["10"] = {"inputs": {"value": 30}, "class_type": "IntConstant", "_meta": {"title": "IntConstant"}}
    assert ui_to_api(workflow, sd) == want


def test_load_image_upload_value_is_skipped(sd: NodeRegistry) -> None:
    workflow = {"version": 0.4, "nodes": [], "links": [[1, 1, 0, 2, 0, "IMAGE"]]}
    add_node(
        workflow,
        1,
        "LoadImage",
        outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK"}],
        widgets_values=["photo.jpg", "image"],
    )
    add_node(
        workflow,
        2,
        "SaveImage",
        inputs=[{"name": "images", "type": "IMAGE", "link": 1}],
        widgets_values=["loaded"],
    )
    assert ui_to_api(workflow, sd) == {
        "1": {"inputs": {"image": "photo.jpg"}, "class_type": "LoadImage", "_meta": {"title": "Load Image"}},
        "2": {
            "inputs": {"filename_prefix": "loaded", "images": ["1", 0]},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        },
    }


@pytest.mark.parametrize(
    ("values", "want"),
    [
        # seed + control, noise_seed (opted out), pick + control + filter, label, upload-free, sizes
        ([7, "increment", 9, "b", "randomize", "", "hi", 3], [7, 9, "b", "hi", 3]),
        # legacy boolean control value
        ([7, True, 9, "c", False, "", "hi", 3], [7, 9, "c", "hi", 3]),
        # old workflows stored a value for the forceInput input too
        ([7, "fixed", 9, "a", "fixed", "", "tags!", "hi", 3], [7, 9, "a", "hi", 3]),
        # written by hand without control values: the extras are skipped only where values fit
        ([7, 9, "b", "hi", 3], [7, 9, "b", "hi", 3]),
        # too few values: the rest take their defaults
        ([7, "fixed"], [7, 0, "a", "none", 1]),
    ],
)
def test_widget_layout_and_control_values(sd: NodeRegistry, values: list[Any], want: list[Any]) -> None:
    workflow: dict[str, Any] = {"nodes": [], "links": []}
    add_node(workflow, 1, "SeedConventions", widgets_values=values)
    names = ["seed", "noise_seed", "pick", "label", "sizes"]
    assert ui_to_api(workflow, sd)["1"]["inputs"] == dict(zip(names, want, strict=True))


def test_widget_values_by_name_and_list_values(sd: NodeRegistry) -> None:
    workflow: dict[str, Any] = {"nodes": [], "links": []}
    add_node(workflow, 1, "SeedConventions", widgets_values={"seed": 5, "label": ["x", "y"], "other": 1})
    inputs = ui_to_api(workflow, sd)["1"]["inputs"]
    assert inputs == {"seed": 5, "noise_seed": 0, "pick": "a", "label": {"__value__": ["x", "y"]}, "sizes": 1}


def test_link_to_a_missing_node_names_both(sd: NodeRegistry) -> None:
    workflow = v04()
    relink(workflow, 1, 99, 0)
    error = convert_error(workflow, sd)
    assert error.node_id == "3"
    assert "node #3 (KSampler)" in str(error) and "'model'" in str(error) and "#99" in str(error)

    workflow = v04()
    node_of(workflow, 6)["inputs"][0]["link"] = 77
    error = convert_error(workflow, sd)
    assert "node #6 (CLIPTextEncode 'Positive Prompt')" in str(error) and "link 77" in str(error)


def test_unknown_node_type_names_id_and_type(sd: NodeRegistry) -> None:
    workflow = v04()
    node_of(workflow, 8)["type"] = "FancyVAEDecode"
    error = convert_error(workflow, sd)
    assert error.node_id == "8"
    assert str(error) == "node #8 (FancyVAEDecode): node type 'FancyVAEDecode' is not installed in Loom"


def test_empty_group_nodes_and_subgraphs_leave_nothing(sd: NodeRegistry) -> None:
    workflow = v04()
    subgraph_id = "9f2c4d1e-0b7a-4e3f-8c6d-5a4b3c2d1e0f"
    workflow["definitions"] = {"subgraphs": [{"id": subgraph_id, "name": "Upscale", "nodes": []}]}
    workflow["extra"]["groupNodes"] = {"Sampler Pack": {"nodes": []}}
    add_node(workflow, 10, subgraph_id)
    assert "10" not in ui_to_api(
        workflow, sd
    )  # an empty subgraph leaves nothing (tests/engine/test_ui_subgraphs.py)
    workflow["nodes"][-1]["type"] = "workflow>Sampler Pack"
    assert "10" not in ui_to_api(workflow, sd)  # group nodes: tests/engine/test_ui_groupnodes.py


def test_reroute_loop_is_an_error(sd: NodeRegistry) -> None:
    workflow = v04()
    add_reroute(workflow, 10, 41)
    add_reroute(workflow, 11, 40)
    workflow["links"] += [[40, 10, 0, 11, 0, "*"], [41, 11, 0, 10, 0, "*"]]
    relink(workflow, 9, 10, 0)
    assert "leads back to itself" in str(convert_error(workflow, sd))


@pytest.mark.parametrize(
    "workflow",
    [None, [], {"nodes": "x", "links": []}, {"nodes": [1], "links": []}, {"nodes": [{"id": 1}], "links": []}],
)
def test_malformed_workflows_are_conversion_errors(sd: NodeRegistry, workflow: Any) -> None:
    convert_error(workflow, sd)


JUNK: list[Any] = [None, -1, 0, 3, 2.5, True, "", "x", "KSampler", [], [1], [None, 2], {}, {"name": 1}]


def mutate(value: Any, rng: random.Random) -> Any:
    """One random change somewhere inside a JSON value."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        roll = rng.random()
        if roll < 0.15:
            del value[key]
        elif roll < 0.4:
            value[key] = rng.choice(JUNK)
        else:
            value[key] = mutate(value[key], rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        index = rng.randrange(len(value))
        roll = rng.random()
        if roll < 0.15:
            del value[index]
        elif roll < 0.4:
            value[index] = rng.choice(JUNK)
        else:
            value[index] = mutate(value[index], rng)
        return value
    return rng.choice(JUNK)


def test_fuzzed_workflows_convert_or_raise_conversion_errors(sd: NodeRegistry) -> None:
    rng = random.Random(20240611)
    bases = [v04(), load("default_t2i_v1.json")]
    outcomes = {"converted": 0, "rejected": 0}
    for _ in range(400):
        workflow = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            workflow = mutate(workflow, rng)
        try:
            prompt = ui_to_api(workflow, sd)
        except WorkflowConversionError as error:
            assert str(error)
            outcomes["rejected"] += 1
        else:
            assert isinstance(prompt, dict)
            validate_prompt(sd, prompt)  # whatever came out, validation copes with it
            outcomes["converted"] += 1
    assert outcomes["converted"] > 50 and outcomes["rejected"] > 50


def test_every_missing_node_type_is_named_at_once(sd: NodeRegistry) -> None:
    workflow = v04()
    node_of(workflow, 8)["type"] = "FancyVAEDecode"
    node_of(workflow, 6)["type"] = "FancyEncode"
    node_of(workflow, 7)["type"] = "FancyEncode"
    error = convert_error(workflow, sd)
    message = str(error)
    assert message.startswith("2 node types not installed in Loom: ")
    assert "'FancyVAEDecode' (node #8)" in message
    assert "'FancyEncode' (node #6, #7)" in message or "'FancyEncode' (node #7, #6)" in message
