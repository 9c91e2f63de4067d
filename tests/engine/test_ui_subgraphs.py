"""Subgraphs in UI-format workflows (the front end's `definitions.subgraphs`, as in the Z-Image Turbo
template) are flattened into plain nodes and convert to the prompt the front end would queue."""

from __future__ import annotations

from typing import Any

import pytest

from engine.registry import NodeRegistry
from engine.ui_workflow import ui_to_api

SCALE = "11111111-2222-3333-4444-555555555555"
TWICE = "66666666-7777-8888-9999-000000000000"


def _scale_subgraph() -> dict[str, Any]:
    """LATENT in → LatentUpscaleBy (its scale promoted as an unlinked input) → LatentMultiply → out."""
    return {
        "id": SCALE,
        "name": "scale and brighten",
        "inputs": [
            {"id": "a", "name": "samples", "type": "LATENT", "linkIds": [1]},
            {"id": "b", "name": "scale_by", "type": "FLOAT", "linkIds": [2]},
        ],
        "outputs": [{"id": "c", "name": "LATENT", "type": "LATENT", "linkIds": [4]}],
        "nodes": [
            {
                "id": 7,
                "type": "LatentUpscaleBy",
                "inputs": [
                    {"name": "samples", "type": "LATENT", "link": 1},
                    {"name": "scale_by", "type": "FLOAT", "link": 2, "widget": {"name": "scale_by"}},
                ],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [3]}],
                "widgets_values": ["bilinear", 2.0],
            },
            {
                "id": 8,
                "type": "LatentMultiply",
                "inputs": [{"name": "samples", "type": "LATENT", "link": 3}],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [4]}],
                "widgets_values": [0.5],
            },
        ],
        "links": [
            {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 7, "target_slot": 0, "type": "LATENT"},
            {"id": 2, "origin_id": -10, "origin_slot": 1, "target_id": 7, "target_slot": 1, "type": "FLOAT"},
            {"id": 3, "origin_id": 7, "origin_slot": 0, "target_id": 8, "target_slot": 0, "type": "LATENT"},
            {"id": 4, "origin_id": 8, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "LATENT"},
        ],
    }


def _twice_subgraph() -> dict[str, Any]:
    """A subgraph holding the first one twice in a row (nesting)."""
    inner = {"name": "samples", "type": "LATENT"}
    return {
        "id": TWICE,
        "name": "twice",
        "inputs": [{"id": "d", "name": "samples", "type": "LATENT", "linkIds": [1]}],
        "outputs": [{"id": "e", "name": "LATENT", "type": "LATENT", "linkIds": [3]}],
        "nodes": [
            {"id": 1, "type": SCALE, "inputs": [{**inner, "link": 1}], "outputs": [{"links": [2]}]},
            {"id": 2, "type": SCALE, "inputs": [{**inner, "link": 2}], "outputs": [{"links": [3]}]},
        ],
        "links": [
            {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "LATENT"},
            {"id": 2, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "LATENT"},
            {"id": 3, "origin_id": 2, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "LATENT"},
        ],
    }


def workflow(instance_type: str, mode: int = 0) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": 1,
                "type": "EmptyLatentImage",
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [10]}],
                "widgets_values": [64, 48, 1],
            },
            {
                "id": 5,
                "type": instance_type,
                "mode": mode,
                "inputs": [{"name": "samples", "type": "LATENT", "link": 10}],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [11]}],
                "widgets_values": [],
                "properties": {"proxyWidgets": [["7", "scale_by"]]},
            },
            {
                "id": 9,
                "type": "SaveLatent",
                "inputs": [{"name": "samples", "type": "LATENT", "link": 11}],
                "widgets_values": ["latents/out"],
            },
        ],
        "links": [[10, 1, 0, 5, 0, "LATENT"], [11, 5, 0, 9, 0, "LATENT"]],
        "definitions": {"subgraphs": [_scale_subgraph(), _twice_subgraph()]},
    }


def test_subgraph_nodes_take_its_place_with_inner_widget_values(registry: NodeRegistry) -> None:
    prompt = ui_to_api(workflow(SCALE), registry)
    assert sorted(prompt) == ["1", "5:7", "5:8", "9"]
    upscale = prompt["5:7"]
    assert upscale["class_type"] == "LatentUpscaleBy"
    assert upscale["inputs"] == {"samples": ["1", 0], "upscale_method": "bilinear", "scale_by": 2.0}
    assert prompt["5:8"]["inputs"] == {"samples": ["5:7", 0], "multiplier": 0.5}
    assert prompt["9"]["inputs"]["samples"] == ["5:8", 0]


def test_nested_subgraphs_flatten_with_nested_ids(registry: NodeRegistry) -> None:
    prompt = ui_to_api(workflow(TWICE), registry)
    assert sorted(prompt) == ["1", "5:1:7", "5:1:8", "5:2:7", "5:2:8", "9"]
    assert prompt["5:2:7"]["inputs"]["samples"] == ["5:1:8", 0]
    assert prompt["9"]["inputs"]["samples"] == ["5:2:8", 0]


@pytest.mark.parametrize("mode", [2])
def test_a_muted_subgraph_mutes_its_nodes(registry: NodeRegistry, mode: int) -> None:
    prompt = ui_to_api(workflow(SCALE, mode), registry)
    assert sorted(prompt) == ["1", "9"] and "samples" not in prompt["9"]["inputs"]


def test_outer_links_reach_the_subgraph_input_of_their_name(registry: NodeRegistry) -> None:
    """An instance may show only some of its subgraph's inputs (image_qwen_Image_2512_controlnet's shows
    5 of 11): its slot 0 here is `samples`, the subgraph's second input, and is wired by name."""
    graph = workflow(SCALE)
    subgraph = graph["definitions"]["subgraphs"][0]
    subgraph["inputs"].reverse()  # scale_by first, samples second
    for link in subgraph["links"]:
        if link["origin_id"] == -10:
            link["origin_slot"] = 1 - link["origin_slot"]
    prompt = ui_to_api(graph, registry)
    assert prompt["5:7"]["inputs"] == {"samples": ["1", 0], "upscale_method": "bilinear", "scale_by": 2.0}


@pytest.mark.parametrize("stored", ["positional", "named"])
def test_an_instance_value_for_an_unlinked_input_reaches_the_inner_widget(
    registry: NodeRegistry, stored: str
) -> None:
    """The Flux 3 Klein templates keep the prompt and sampler settings on the instance, one value per
    subgraph input (or by name in `widgets_values_named`): those win over the inner nodes' own values.
    The linked input (samples) keeps its link."""
    graph = workflow(SCALE)
    instance = graph["nodes"][1]
    if stored == "positional":
        instance["widgets_values"] = [None, 3.0]
    else:
        instance["widgets_values_named"] = {"scale_by": 3.0}
    prompt = ui_to_api(graph, registry)
    assert prompt["5:7"]["inputs"] == {"samples": ["1", 0], "upscale_method": "bilinear", "scale_by": 3.0}


def test_an_instance_with_other_values_leaves_the_inner_widgets(registry: NodeRegistry) -> None:
    graph = workflow(SCALE)
    graph["nodes"][1]["widgets_values"] = [3.0]  # not one value per subgraph input: not read
    assert ui_to_api(graph, registry)["5:7"]["inputs"]["scale_by"] == 2.0
