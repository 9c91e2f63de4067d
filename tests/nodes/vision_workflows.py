"""UI-format equivalents (our own JSON, same graph shapes and widget values) of ComfyUI_examples'
unCLIP, SDXL revision and GLIGEN workflows, and of the usual T2I style-model graph, sized for the tiny
test models (64×64 latents, 2 steps)."""

from __future__ import annotations

from typing import Any

# A node: (id, type, widgets_values, {input name: (source id, source slot)}), outputs found from the links.
Spec = tuple[int, str, list[Any], dict[str, tuple[int, int]]]

OUTPUT_TYPES = {
    "CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"],
    "unCLIPCheckpointLoader": ["MODEL", "CLIP", "VAE", "CLIP_VISION"],
    "CLIPVisionLoader": ["CLIP_VISION"],
    "CLIPVisionEncode": ["CLIP_VISION_OUTPUT"],
    "StyleModelLoader": ["STYLE_MODEL"],
    "GLIGENLoader": ["GLIGEN"],
    "LoadImage": ["IMAGE", "MASK"],
    "EmptyLatentImage": ["LATENT"],
    "KSampler": ["LATENT"],
    "VAEDecode": ["IMAGE"],
    "SaveImage": [],
}
CONDITIONING_NODES = (
    "CLIPTextEncode",
    "unCLIPConditioning",
    "ConditioningZeroOut",
    "StyleModelApply",
    "GLIGENTextBoxApply",
)


def ui_workflow(specs: list[Spec]) -> dict[str, Any]:
    """A litegraph workflow (nodes with typed input/output slots, links) from compact node specs."""
    kinds = {node_id: kind for node_id, kind, _, _ in specs}

    def outputs_of(kind: str) -> list[str]:
        return ["CONDITIONING"] if kind in CONDITIONING_NODES else OUTPUT_TYPES[kind]

    links: list[list[Any]] = []
    inputs: dict[int, list[dict[str, Any]]] = {node_id: [] for node_id in kinds}
    out_links: dict[tuple[int, int], list[int]] = {}
    for node_id, _, _, sources in specs:
        for name, (source, slot) in sources.items():
            link_type = outputs_of(kinds[source])[slot]
            link_id = len(links) + 1
            links.append([link_id, source, slot, node_id, len(inputs[node_id]), link_type])
            inputs[node_id].append({"name": name, "type": link_type, "link": link_id})
            out_links.setdefault((source, slot), []).append(link_id)
    nodes = []
    for order, (node_id, kind, widgets, _) in enumerate(specs):
        outputs = [
            {"name": t, "type": t, "links": out_links.get((node_id, slot), []), "slot_index": slot}
            for slot, t in enumerate(outputs_of(kind))
        ]
        nodes.append(
            {
                "id": node_id, "type": kind, "pos": [0, 0], "size": [200, 60], "flags": {}, "order": order,
                "mode": 0, "inputs": inputs[node_id], "outputs": outputs, "properties": {},
                "widgets_values": widgets,
            }
        )  # fmt: skip
    return {
        "last_node_id": max(kinds),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "version": 0.4,
    }


def _sampler(
    model: tuple[int, int], positive: tuple[int, int], negative: tuple[int, int], vae: tuple[int, int]
) -> list[Spec]:
    return [
        (5, "EmptyLatentImage", [64, 64, 1], {}),
        (3, "KSampler", [7, "fixed", 2, 8, "uni_pc_bh2", "normal", 1],
         {"model": model, "positive": positive, "negative": negative, "latent_image": (5, 0)}),
        (8, "VAEDecode", [], {"samples": (3, 0), "vae": vae}),
        (9, "SaveImage", ["ComfyUI"], {"images": (8, 0)}),
    ]  # fmt: skip


def unclip_example(ckpt: str, images: int = 1) -> dict[str, Any]:
    """unclip_example.png (images=1) and unclip_example_multiple.png (images=2)."""
    strength, augmentation = (1.0, 0.3) if images == 1 else (0.5, 0.4)
    specs: list[Spec] = [
        (32, "unCLIPCheckpointLoader", [ckpt], {}),
        (6, "CLIPTextEncode", ["beautiful photograph"], {"clip": (32, 1)}),
        (7, "CLIPTextEncode", ["bad hands"], {"clip": (32, 1)}),
        (34, "LoadImage", ["mountains.png", "image"], {}),
        (13, "CLIPVisionEncode", ["center"], {"clip_vision": (32, 3), "image": (34, 0)}),
        (
            19,
            "unCLIPConditioning",
            [strength, augmentation],
            {"conditioning": (6, 0), "clip_vision_output": (13, 0)},
        ),
    ]
    positive = (19, 0)
    if images == 2:
        specs += [
            (38, "LoadImage", ["sunset.png", "image"], {}),
            (36, "CLIPVisionEncode", ["center"], {"clip_vision": (32, 3), "image": (38, 0)}),
            (37, "unCLIPConditioning", [strength, augmentation],
             {"conditioning": (19, 0), "clip_vision_output": (36, 0)}),
        ]  # fmt: skip
        positive = (37, 0)
    return ui_workflow(specs + _sampler((32, 0), positive, (7, 0), (32, 2)))


def revision_zero_positive(ckpt: str, clip_vision: str) -> dict[str, Any]:
    """sdxl_revision_zero_positive.png: two images on a zeroed empty prompt, the empty prompt as negative."""
    specs: list[Spec] = [
        (40, "CheckpointLoaderSimple", [ckpt], {}),
        (39, "CLIPVisionLoader", [clip_vision], {}),
        (34, "LoadImage", ["mountains.png", "image"], {}),
        (38, "LoadImage", ["sunset.png", "image"], {}),
        (13, "CLIPVisionEncode", ["center"], {"clip_vision": (39, 0), "image": (34, 0)}),
        (36, "CLIPVisionEncode", ["center"], {"clip_vision": (39, 0), "image": (38, 0)}),
        (6, "CLIPTextEncode", [""], {"clip": (40, 1)}),
        (42, "ConditioningZeroOut", [], {"conditioning": (6, 0)}),
        (19, "unCLIPConditioning", [0.75, 0], {"conditioning": (42, 0), "clip_vision_output": (13, 0)}),
        (37, "unCLIPConditioning", [0.75, 0], {"conditioning": (19, 0), "clip_vision_output": (36, 0)}),
    ]
    return ui_workflow(specs + _sampler((40, 0), (37, 0), (6, 0), (40, 2)))


def style_model_example(ckpt: str, clip_vision: str, style_model: str) -> dict[str, Any]:
    """Text-to-image with a T2I style model reading an image through CLIP vision."""
    specs: list[Spec] = [
        (4, "CheckpointLoaderSimple", [ckpt], {}),
        (6, "CLIPTextEncode", ["a red circle"], {"clip": (4, 1)}),
        (7, "CLIPTextEncode", [""], {"clip": (4, 1)}),
        (20, "CLIPVisionLoader", [clip_vision], {}),
        (21, "LoadImage", ["mountains.png", "image"], {}),
        (22, "CLIPVisionEncode", ["center"], {"clip_vision": (20, 0), "image": (21, 0)}),
        (23, "StyleModelLoader", [style_model], {}),
        (24, "StyleModelApply", [1.0, "multiply"],
         {"conditioning": (6, 0), "style_model": (23, 0), "clip_vision_output": (22, 0)}),
    ]  # fmt: skip
    return ui_workflow(specs + _sampler((4, 0), (24, 0), (7, 0), (4, 2)))


def gligen_example(ckpt: str, gligen: str) -> dict[str, Any]:
    """gligen_textbox_example.png: two chained text boxes (positions scaled from 768² to 64²)."""
    specs: list[Spec] = [
        (4, "CheckpointLoaderSimple", [ckpt], {}),
        (10, "GLIGENLoader", [gligen], {}),
        (24, "CLIPTextEncode", ["snow mountain, glass bottle; purple galaxy bottle; sun"], {"clip": (4, 1)}),
        (7, "CLIPTextEncode", ["text, watermark"], {"clip": (4, 1)}),
        (21, "GLIGENTextBoxApply", ["purple galaxy bottle", 16, 24, 16, 24],
         {"conditioning_to": (24, 0), "clip": (4, 1), "gligen_textbox_model": (10, 0)}),
        (27, "GLIGENTextBoxApply", ["sun", 16, 16, 40, 8],
         {"conditioning_to": (21, 0), "clip": (4, 1), "gligen_textbox_model": (10, 0)}),
    ]  # fmt: skip
    return ui_workflow(specs + _sampler((4, 0), (27, 0), (7, 0), (4, 2)))
