"""Legacy group nodes (`extra.groupNodes`, types `workflow>Name` / `workflow/Name`) in UI-format workflows
are unpacked into plain nodes with the ids and values the front end's group-node extension queues.

The definitions below are written in the shape real saved workflows use: `nodes` with `index`, links as
`[from index, from slot, to index, to slot, original origin id, type]` (from index null: fed from
outside), `config` renaming group inputs; older front ends kept widgets on the inner nodes, newer ones
list every widget as an input slot ("converted" widgets, which the group shows after all other inputs).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.registry import NodeRegistry
from engine.ui_workflow import WorkflowConversionError, ui_to_api


def slot(name: str, kind: str, link: int | None = None, widget: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": kind, "link": link}
    if widget:
        entry["widget"] = {"name": name}
    return entry


def out(name: str, kind: str, links: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "type": kind, "links": links}


def node(
    node_id: int | None,
    kind: str,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    values: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "mode": 0, "inputs": inputs or [], "outputs": outputs or []}
    # The front end places nodes when it unpacks a group (bench/group_node_frontend.py loads these).
    entry |= {"pos": [0, 0], "size": [200, 100], "flags": {}, "properties": {}}
    if node_id is not None:
        entry["id"] = node_id
    if values is not None:
        entry["widgets_values"] = values
    return entry | extra


def inner(index: int, kind: str, *args: Any, **extra: Any) -> dict[str, Any]:
    return node(None, kind, *args, index=index, **extra)


def workflow(nodes: list[dict[str, Any]], links: list[list[Any]], groups: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": nodes, "links": links, "extra": {"groupNodes": groups}, "version": 0.4}


def checkpoint(node_id: int = 4, links: list[int] | None = None) -> dict[str, Any]:
    outputs = [out("MODEL", "MODEL", links), out("CLIP", "CLIP"), out("VAE", "VAE")]
    return node(node_id, "CheckpointLoaderSimple", [], outputs, ["model.safetensors"])


# --- widgets kept on the inner nodes (older front ends) -----------------------------------------------


def sampler_group() -> dict[str, Any]:
    """KSamplerSelect, BasicScheduler (its model fed from outside) and RandomNoise."""
    return {
        "nodes": [
            inner(0, "KSamplerSelect", [], [out("SAMPLER", "SAMPLER", [])], ["euler"]),
            inner(
                1,
                "BasicScheduler",
                [slot("model", "MODEL")],
                [out("SIGMAS", "SIGMAS", [])],
                ["normal", 20, 1],
            ),
            inner(2, "RandomNoise", [], [out("NOISE", "NOISE", [])], [1, "fixed"]),
        ],
        "links": [[None, 0, 1, 0, 4, "MODEL"]],
        "external": [],
    }


def sampler_instance(
    node_id: int, model_link: int, values: list[Any], out_links: list[int]
) -> dict[str, Any]:
    outputs = [out("SAMPLER", "SAMPLER", [out_links[0]]), out("SIGMAS", "SIGMAS", [out_links[1]])]
    outputs.append(out("NOISE", "NOISE", [out_links[2]]))
    return node(node_id, "workflow>Sampler", [slot("model", "MODEL", model_link)], outputs, values)


def consumer(node_id: int, noise: int, sampler: int, sigmas: int) -> dict[str, Any]:
    inputs = [slot("noise", "NOISE", noise), slot("guider", "GUIDER"), slot("sampler", "SAMPLER", sampler)]
    inputs += [slot("sigmas", "SIGMAS", sigmas), slot("latent_image", "LATENT")]
    return node(node_id, "SamplerCustomAdvanced", inputs, [out("output", "LATENT")])


def sampler_workflow() -> dict[str, Any]:
    values = ["dpmpp_2m", "karras", 30, 0.8, 1234, "randomize"]
    nodes = [checkpoint(links=[1]), sampler_instance(5, 1, values, [2, 3, 4]), consumer(9, 4, 2, 3)]
    links = [
        [1, 4, 0, 5, 0, "MODEL"],
        [2, 5, 0, 9, 2, "SAMPLER"],
        [3, 5, 1, 9, 3, "SIGMAS"],
        [4, 5, 2, 9, 0, "NOISE"],
    ]
    return workflow(nodes, links, {"Sampler": sampler_group()})


def inputs_of(prompt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node_id: entry["inputs"] for node_id, entry in prompt.items()}


def test_group_widgets_and_linked_inputs_reach_the_inner_nodes(registry: NodeRegistry) -> None:
    prompt = ui_to_api(sampler_workflow(), registry)
    assert inputs_of(prompt) == {
        "4": {"ckpt_name": "model.safetensors"},
        "5:0": {"sampler_name": "dpmpp_2m"},
        "5:1": {"scheduler": "karras", "steps": 30, "denoise": 0.8, "model": ["4", 0]},
        "5:2": {"noise_seed": 1234},  # the value stored before its control widget's "randomize"
        "9": {"noise": ["5:2", 0], "sampler": ["5:0", 0], "sigmas": ["5:1", 0]},
    }
    assert prompt["5:1"]["class_type"] == "BasicScheduler"
    assert prompt["5:1"]["_meta"] == {"title": "BasicScheduler"}


def test_legacy_slash_separator_is_the_same_group(registry: NodeRegistry) -> None:
    graph = sampler_workflow()
    graph["nodes"][1]["type"] = "workflow/Sampler"
    assert ui_to_api(graph, registry) == ui_to_api(sampler_workflow(), registry)


def two_instances_workflow() -> dict[str, Any]:
    graph = sampler_workflow()
    graph["nodes"][0]["outputs"][0]["links"] = [1, 5]
    graph["nodes"] += [
        sampler_instance(6, 5, ["heun", "simple", 8, 0.5, 77, "fixed"], [6, 7, 8]),
        consumer(10, 8, 6, 7),
    ]
    graph["links"] += [[5, 4, 0, 6, 0, "MODEL"], [6, 6, 0, 10, 2, "SAMPLER"]]
    graph["links"] += [[7, 6, 1, 10, 3, "SIGMAS"], [8, 6, 2, 10, 0, "NOISE"]]
    return graph


def test_two_instances_of_one_definition_keep_their_own_values(registry: NodeRegistry) -> None:
    prompt = inputs_of(ui_to_api(two_instances_workflow(), registry))
    assert prompt["5:1"] == {"scheduler": "karras", "steps": 30, "denoise": 0.8, "model": ["4", 0]}
    assert prompt["6:1"] == {"scheduler": "simple", "steps": 8, "denoise": 0.5, "model": ["4", 0]}
    assert (prompt["5:0"], prompt["6:0"]) == ({"sampler_name": "dpmpp_2m"}, {"sampler_name": "heun"})
    assert (prompt["5:2"], prompt["6:2"]) == ({"noise_seed": 1234}, {"noise_seed": 77})
    assert prompt["10"] == {"noise": ["6:2", 0], "sampler": ["6:0", 0], "sigmas": ["6:1", 0]}


# --- inner nodes sharing input names --------------------------------------------------------------------


def upscale_chain() -> dict[str, Any]:
    """Three LatentUpscaleBy in a row: the second and third repeat the first's widget names."""
    nodes = [
        inner(
            i,
            "LatentUpscaleBy",
            [slot("samples", "LATENT")],
            [out("LATENT", "LATENT", [])],
            ["bilinear", 1.5],
        )
        for i in range(3)
    ]
    return {"nodes": nodes, "links": [[0, 0, 1, 0, 20, "LATENT"], [1, 0, 2, 0, 21, "LATENT"]], "external": []}


def shared_names_workflow() -> dict[str, Any]:
    # Group widgets: upscale_method, scale_by, "LatentUpscaleBy upscale_method", "LatentUpscaleBy scale_by",
    # "LatentUpscaleBy 2 upscale_method", "LatentUpscaleBy 2 scale_by"; the last is shown as an input
    # fed by a PrimitiveNode.
    shown = slot("LatentUpscaleBy 2 scale_by", "FLOAT", 3, widget=True)
    instance = node(
        5,
        "workflow>Upscale",
        [slot("samples", "LATENT", 1), shown],
        [out("LATENT", "LATENT", [2])],
        ["nearest-exact", 1.1, "bicubic", 1.2, "area", 1.3],
    )
    nodes = [
        node(3, "EmptyLatentImage", [], [out("LATENT", "LATENT", [1])], [64, 64, 1]),
        node(
            8,
            "PrimitiveNode",
            [],
            [{"name": "FLOAT", "type": "FLOAT", "links": [3], "widget": {"name": "x"}}],
            [3.0, "fixed"],
        ),
        instance,
        node(9, "LatentMultiply", [slot("samples", "LATENT", 2)], [out("LATENT", "LATENT")], [0.5]),
    ]
    links = [[1, 3, 0, 5, 0, "LATENT"], [2, 5, 0, 9, 0, "LATENT"], [3, 8, 0, 5, 1, "FLOAT"]]
    return workflow(nodes, links, {"Upscale": upscale_chain()})


def test_shared_input_names_are_prefixed_and_reachable_by_name(registry: NodeRegistry) -> None:
    prompt = inputs_of(ui_to_api(shared_names_workflow(), registry))
    assert prompt["5:0"] == {"upscale_method": "nearest-exact", "scale_by": 1.1, "samples": ["3", 0]}
    assert prompt["5:1"] == {"upscale_method": "bicubic", "scale_by": 1.2, "samples": ["5:0", 0]}
    assert prompt["5:2"] == {"upscale_method": "area", "scale_by": 3.0, "samples": ["5:1", 0]}
    assert prompt["9"]["samples"] == ["5:2", 0]


# --- muted and bypassed instances -----------------------------------------------------------------------


def chain_workflow(mode: int) -> dict[str, Any]:
    group = upscale_chain()
    group["nodes"] = group["nodes"][:2]
    group["links"] = group["links"][:1]
    instance = node(5, "workflow>Twice", [slot("samples", "LATENT", 1)], [out("LATENT", "LATENT", [2])])
    instance |= {"mode": mode, "widgets_values": ["bilinear", 2.0, "bilinear", 2.0]}
    nodes = [
        node(3, "EmptyLatentImage", [], [out("LATENT", "LATENT", [1])], [64, 64, 1]),
        instance,
        node(9, "LatentMultiply", [slot("samples", "LATENT", 2)], [out("LATENT", "LATENT")], [0.5]),
    ]
    return workflow(nodes, [[1, 3, 0, 5, 0, "LATENT"], [2, 5, 0, 9, 0, "LATENT"]], {"Twice": group})


def test_a_running_chain_links_through_its_inner_nodes(registry: NodeRegistry) -> None:
    prompt = inputs_of(ui_to_api(chain_workflow(0), registry))
    assert prompt["5:0"]["samples"] == ["3", 0] and prompt["5:1"]["samples"] == ["5:0", 0]
    assert prompt["9"] == {"multiplier": 0.5, "samples": ["5:1", 0]}


def test_a_muted_group_sends_none_of_its_nodes(registry: NodeRegistry) -> None:
    prompt = inputs_of(ui_to_api(chain_workflow(2), registry))
    assert sorted(prompt) == ["3", "9"]
    assert prompt["9"] == {"multiplier": 0.5}  # its input came from the muted group


def test_a_bypassed_group_passes_its_input_on(registry: NodeRegistry) -> None:
    prompt = inputs_of(ui_to_api(chain_workflow(4), registry))
    assert sorted(prompt) == ["3", "9"]
    assert prompt["9"] == {"multiplier": 0.5, "samples": ["3", 0]}


# --- a PrimitiveNode and a Reroute inside the group -----------------------------------------------------


def mixed_workflow() -> dict[str, Any]:
    primitive_out = {"name": "FLOAT", "type": "FLOAT", "links": [], "widget": {"name": "scale_by"}}
    group = {
        "nodes": [
            inner(0, "PrimitiveNode", [], [primitive_out], [9.0, "fixed"]),
            inner(1, "Reroute", [slot("", "*")], [out("", "*")]),
            inner(
                2,
                "LatentUpscaleBy",
                [slot("samples", "LATENT"), slot("scale_by", "FLOAT", widget=True)],
                [out("LATENT", "LATENT", [])],
                ["bilinear", 1.5],
            ),
            inner(
                3,
                "LatentUpscaleBy",
                [slot("samples", "LATENT")],
                [out("LATENT", "LATENT", [])],
                ["bilinear", 1.5],
            ),
        ],
        "links": [[0, 0, 2, 1, 30, "FLOAT"], [2, 0, 1, 0, 32, "LATENT"], [1, 0, 3, 0, 31, "LATENT"]],
        "external": [],
    }
    # Group widgets: value (+ its control), upscale_method, "LatentUpscaleBy upscale_method", scale_by.
    instance = node(5, "workflow>Mixed", [slot("samples", "LATENT", 1)], [out("LATENT", "LATENT", [2])])
    instance["widgets_values"] = [2.0, "increment", "bicubic", "area", 0.5]
    nodes = [
        node(3, "EmptyLatentImage", [], [out("LATENT", "LATENT", [1])], [64, 64, 1]),
        instance,
        node(9, "LatentMultiply", [slot("samples", "LATENT", 2)], [out("LATENT", "LATENT")], [0.5]),
    ]
    links = [[1, 3, 0, 5, 0, "LATENT"], [2, 5, 0, 9, 0, "LATENT"]]
    return workflow(nodes, links, {"Mixed": group})


def test_inner_primitive_and_reroute(registry: NodeRegistry) -> None:
    prompt = inputs_of(ui_to_api(mixed_workflow(), registry))
    assert sorted(prompt) == ["3", "5:2", "5:3", "9"]  # primitive and reroute are never sent
    assert prompt["5:2"] == {"upscale_method": "bicubic", "scale_by": 2.0, "samples": ["3", 0]}
    assert prompt["5:3"] == {"upscale_method": "area", "scale_by": 0.5, "samples": ["5:2", 0]}
    assert prompt["9"]["samples"] == ["5:3", 0]


# --- the HiDream E1 example's IP2PSampler (widgets listed as inputs, Reroutes fed from outside) ----------


def ip2p_group() -> dict[str, Any]:
    """The shape of ComfyUI_examples' hidream_e1_example: every widget listed as an input slot, Reroutes
    renamed by `config`, DualCFGGuider saved before it had `style`."""
    w = True
    cond = "CONDITIONING"
    nodes = [
        inner(
            0,
            "KSamplerSelect",
            [slot("sampler_name", "COMBO", widget=w)],
            [out("SAMPLER", "SAMPLER", [])],
            ["euler"],
        ),
        inner(
            1, "RandomNoise", [slot("noise_seed", "INT", widget=w)], [out("NOISE", "NOISE", [])], [5, "fixed"]
        ),
        inner(2, "Reroute", [slot("", "*")], [out("", "*")]),
        inner(
            3,
            "BasicScheduler",
            [
                slot("model", "MODEL"),
                slot("scheduler", "COMBO", widget=w),
                slot("steps", "INT", widget=w),
                slot("denoise", "FLOAT", widget=w),
            ],
            [out("SIGMAS", "SIGMAS", [])],
            ["normal", 20, 1],
        ),
        inner(4, "Reroute", [slot("", "*")], [out("", "*")]),
        inner(5, "Reroute", [slot("", "*")], [out("", "*")]),
        inner(
            6,
            "InstructPixToPixConditioning",
            [slot("positive", cond), slot("negative", cond), slot("vae", "VAE"), slot("pixels", "IMAGE")],
            [out("positive", cond, []), out("negative", cond, []), out("latent", "LATENT", [])],
            [],
        ),
        inner(
            7,
            "DualCFGGuider",
            [
                slot("model", "MODEL"),
                slot("cond1", cond),
                slot("cond2", cond),
                slot("negative", cond),
                slot("cfg_conds", "FLOAT", widget=w),
                slot("cfg_cond2_negative", "FLOAT", widget=w),
            ],
            [out("GUIDER", "GUIDER", [])],
            [3, 1.5],
        ),
        inner(
            8,
            "SamplerCustomAdvanced",
            [
                slot("noise", "NOISE"),
                slot("guider", "GUIDER"),
                slot("sampler", "SAMPLER"),
                slot("sigmas", "SIGMAS"),
                slot("latent_image", "LATENT"),
            ],
            [out("output", "LATENT", []), out("denoised_output", "LATENT")],
            [],
        ),
    ]
    links = [
        [None, 0, 2, 0, 4, "MODEL"],
        [2, 0, 3, 0, 26, "MODEL"],
        [None, 0, 5, 0, 7, cond],
        [None, 0, 4, 0, 6, cond],
        [4, 0, 6, 0, 35, cond],
        [5, 0, 6, 1, 29, cond],
        [None, 2, 6, 2, 4, "VAE"],
        [None, 0, 6, 3, 13, "IMAGE"],
        [2, 0, 7, 0, 26, "MODEL"],
        [6, 0, 7, 1, 33, cond],
        [6, 1, 7, 2, 33, cond],
        [5, 0, 7, 3, 29, cond],
        [1, 0, 8, 0, 19, "NOISE"],
        [7, 0, 8, 1, 28, "GUIDER"],
        [0, 0, 8, 2, 20, "SAMPLER"],
        [3, 0, 8, 3, 21, "SIGMAS"],
        [6, 2, 8, 4, 33, "LATENT"],
    ]
    config = {
        "2": {"input": {"MODEL": {"name": "model"}}},
        "4": {"input": {cond: {"name": "positive"}}},
        "5": {"input": {cond: {"name": "negative"}}},
        "7": {"input": {"cfg_conds": {"name": "cfg_text"}, "cfg_cond2_negative": {"name": "cfg_image"}}},
    }
    # As saved by some front ends: the node object instead of its index (it matches no node then).
    external = [[copy.deepcopy(nodes[8]), 0, "LATENT"]]
    return {"nodes": nodes, "links": links, "external": external, "config": config}


def ip2p_workflow() -> dict[str, Any]:
    cond = "CONDITIONING"
    instance = node(
        37,
        "workflow>IP2PSampler",
        [
            slot("model", "MODEL", 1),
            slot("positive", cond, 2),
            slot("negative", cond, 3),
            slot("vae", "VAE", 4),
            slot("pixels", "IMAGE", 5),
        ],
        [out("output", "LATENT", [6]), out("denoised_output", "LATENT")],
        ["euler", 850933585641497, "randomize", "normal", 20, 1, 5, 2],
    )
    nodes = [
        checkpoint(41, [1]),
        node(
            6,
            "CLIPTextEncode",
            [slot("clip", "CLIP")],
            [out("CONDITIONING", cond, [2])],
            ["snow"],
            title="Positive",
        ),
        node(
            7,
            "CLIPTextEncode",
            [slot("clip", "CLIP")],
            [out("CONDITIONING", cond, [3])],
            [""],
            title="Negative",
        ),
        node(43, "VAELoader", [], [out("VAE", "VAE", [4, 7])], ["ae.safetensors"]),
        node(
            13, "LoadImage", [], [out("IMAGE", "IMAGE", [5]), out("MASK", "MASK")], ["mountains.png", "image"]
        ),
        instance,
        node(8, "VAEDecode", [slot("samples", "LATENT", 6), slot("vae", "VAE", 7)], [out("IMAGE", "IMAGE")]),
    ]
    links = [
        [1, 41, 0, 37, 0, "MODEL"],
        [2, 6, 0, 37, 1, cond],
        [3, 7, 0, 37, 2, cond],
        [4, 43, 0, 37, 3, "VAE"],
        [5, 13, 0, 37, 4, "IMAGE"],
        [6, 37, 0, 8, 0, "LATENT"],
        [7, 43, 0, 8, 1, "VAE"],
    ]
    return workflow(nodes, links, {"IP2PSampler": ip2p_group()})


def test_hidream_e1_like_group_converts_as_the_front_end_queued_it(registry: NodeRegistry) -> None:
    """The prompt ComfyUI's front end queued for hidream_e1_example (kept in that PNG's `prompt` chunk),
    for the group's nodes; `style` is DualCFGGuider's newer input, at its default."""
    prompt = ui_to_api(ip2p_workflow(), registry)
    assert inputs_of({k: v for k, v in prompt.items() if k.startswith("37:")}) == {
        "37:0": {"sampler_name": "euler"},
        "37:1": {"noise_seed": 850933585641497},
        "37:3": {"scheduler": "normal", "steps": 20, "denoise": 1, "model": ["41", 0]},
        "37:6": {"positive": ["6", 0], "negative": ["7", 0], "vae": ["43", 0], "pixels": ["13", 0]},
        "37:7": {
            "cfg_conds": 5,
            "cfg_cond2_negative": 2,
            "style": "regular",
            "model": ["41", 0],
            "cond1": ["37:6", 0],
            "cond2": ["37:6", 1],
            "negative": ["7", 0],
        },
        "37:8": {
            "noise": ["37:1", 0],
            "guider": ["37:7", 0],
            "sampler": ["37:0", 0],
            "sigmas": ["37:3", 0],
            "latent_image": ["37:6", 2],
        },
    }
    assert prompt["8"]["inputs"]["samples"] == ["37:8", 0]
    assert {k: v["class_type"] for k, v in prompt.items() if k.startswith("37:")} == {
        "37:0": "KSamplerSelect",
        "37:1": "RandomNoise",
        "37:3": "BasicScheduler",
        "37:6": "InstructPixToPixConditioning",
        "37:7": "DualCFGGuider",
        "37:8": "SamplerCustomAdvanced",
    }


# --- errors ----------------------------------------------------------------------------------------------


def test_an_inner_type_that_is_not_installed_names_the_group(registry: NodeRegistry) -> None:
    graph = sampler_workflow()
    graph["extra"]["groupNodes"]["Sampler"]["nodes"][2]["type"] = "FancyNoise"
    with pytest.raises(WorkflowConversionError) as error:
        ui_to_api(graph, registry)
    assert error.value.node_id == "5"
    assert "group node 'Sampler'" in str(error.value) and "FancyNoise" in str(error.value)


def test_a_muted_group_of_missing_types_is_fine(registry: NodeRegistry) -> None:
    graph = sampler_workflow()
    graph["extra"]["groupNodes"]["Sampler"]["nodes"][2]["type"] = "FancyNoise"
    graph["nodes"][1]["mode"] = 2
    assert sorted(ui_to_api(graph, registry)) == ["4", "9"]


def test_a_link_from_an_output_the_group_lacks_is_an_error(registry: NodeRegistry) -> None:
    graph = sampler_workflow()
    graph["links"][3][2] = 7
    with pytest.raises(WorkflowConversionError, match=r"node #5 .*output 7"):
        ui_to_api(graph, registry)


# --- hidden widgets, a Reroute fed from outside into two nodes (stable_cascade__inpaint_controlnet) ------


def inpaint_workflow() -> dict[str, Any]:
    """The shape of ComfyUI_examples' Stable Cascade inpaint group (saved as `workflow/Name`): widgets
    kept on the inner nodes and hidden by `config`, the mask coming in through a Reroute."""
    img, mask = "IMAGE", "MASK"
    group = {
        "nodes": [
            inner(0, "EmptyImage", [], [out(img, img, [])], [512, 512, 1, 16777215]),
            inner(1, "ThresholdMask", [slot("mask", mask)], [out(mask, mask, [])], [0.5]),
            inner(2, "InvertMask", [slot("mask", mask)], [out(mask, mask, [])]),
            inner(
                3,
                "ImageCompositeMasked",
                [slot("destination", img), slot("source", img), slot("mask", mask)],
                [out(img, img, [])],
                [0, 0, True],
            ),
            inner(4, "Reroute", [slot("", "*")], [out("", "*")]),
            inner(5, "JoinImageWithAlpha", [slot("image", img), slot("alpha", mask)], [out(img, img, [])]),
        ],
        "links": [
            [None, 1, 4, 0, 50, mask],
            [4, 0, 1, 0, 66, mask],
            [4, 0, 2, 0, 66, mask],
            [None, 0, 3, 0, 50, img],
            [0, 0, 3, 1, 62, img],
            [1, 0, 3, 2, 64, mask],
            [3, 0, 5, 0, 59, img],
            [2, 0, 5, 1, 61, mask],
        ],
        "external": [[5, 0, img]],
        "config": {
            "0": {"input": {n: {"visible": False} for n in ("width", "height", "batch_size", "color")}},
            "1": {"input": {"value": {"visible": False}}},
            "3": {"input": {"x": {"visible": False}, "destination": {"name": "image"}}},
            "4": {"output": {"0": {"name": ""}}, "input": {mask: {"name": "mask"}}},
        },
    }
    instance = node(
        68, "workflow/Inpaint", [slot("image", img, 1), slot("mask", mask, 2)], [out(img, img, [3])]
    )
    instance["widgets_values"] = [256, 128, 1, 0, 0.25, 8, 4, False]
    nodes = [
        node(50, "LoadImage", [], [out(img, img, [1]), out(mask, mask, [2])], ["in.png", "image"]),
        instance,
        node(9, "PreviewImage", [slot("images", img, 3)], []),
    ]
    links = [[1, 50, 0, 68, 0, img], [2, 50, 1, 68, 1, mask], [3, 68, 0, 9, 0, img]]
    return workflow(nodes, links, {"Inpaint": group})


def test_hidden_widgets_and_an_outside_reroute_feeding_two_inner_nodes(registry: NodeRegistry) -> None:
    prompt = inputs_of(ui_to_api(inpaint_workflow(), registry))
    assert {k: v for k, v in prompt.items() if k.startswith("68:")} == {
        "68:0": {"width": 256, "height": 128, "batch_size": 1, "color": 0},
        "68:1": {"value": 0.25, "mask": ["50", 1]},
        "68:2": {"mask": ["50", 1]},
        "68:3": {
            "x": 8,
            "y": 4,
            "resize_source": False,
            "destination": ["50", 0],
            "source": ["68:0", 0],
            "mask": ["68:1", 0],
        },
        "68:5": {"image": ["68:3", 0], "alpha": ["68:2", 0]},
    }
    assert prompt["9"] == {"images": ["68:5", 0]}


def test_one_instance_feeding_another(registry: NodeRegistry) -> None:
    graph = chain_workflow(0)
    second = copy.deepcopy(graph["nodes"][1])
    second |= {"id": 6, "widgets_values": ["area", 0.5, "area", 0.5]}
    second["inputs"][0]["link"], second["outputs"][0]["links"] = 2, [4]
    graph["nodes"][1]["outputs"][0]["links"] = [2]
    graph["nodes"][2]["inputs"][0]["link"] = 4
    graph["nodes"].insert(2, second)
    graph["links"] = [[1, 3, 0, 5, 0, "LATENT"], [2, 5, 0, 6, 0, "LATENT"], [4, 6, 0, 9, 0, "LATENT"]]
    prompt = inputs_of(ui_to_api(graph, registry))
    assert prompt["6:0"] == {"upscale_method": "area", "scale_by": 0.5, "samples": ["5:1", 0]}
    assert prompt["5:1"] == {"upscale_method": "bilinear", "scale_by": 2.0, "samples": ["5:0", 0]}
    assert prompt["9"]["samples"] == ["6:1", 0]
