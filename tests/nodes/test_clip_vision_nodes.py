"""CLIPVisionLoader and CLIPVisionEncode on random-weight stand-ins in both key layouts, and the
comfy.clip_vision surface packs import."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from engine import comfy_compat
from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from engine.models.clip_vision import CLIP_MEAN, CLIP_STD, detect_vision
from tests.nodes.harness import call
from tests.nodes.vision_fixtures import VISION, capture, hf_layout, open_clip_layout, tiny_vision, write


@pytest.fixture(scope="module")
def vision() -> Any:
    return tiny_vision(seed=0)


@pytest.fixture
def vision_folders(loom_folders: Folders, vision: Any) -> Folders:
    folder = loom_folders.models["clip_vision"][0]
    write(folder / "vit_hf.safetensors", hf_layout(vision))
    write(folder / "vit_open_clip.safetensors", open_clip_layout(vision))
    write(folder / "lora_like.safetensors", {"lora_unet_down.lora_up.weight": torch.zeros(4, 4)})
    return loom_folders


def _gelu_quick(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _by_hand(state: dict[str, torch.Tensor], pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ViT forward written out over open_clip's weights (fused qkv, sequence of class + patches)."""
    p = "visual."
    x = F.conv2d(pixels, state[p + "conv1.weight"], stride=VISION["patch"]).flatten(2).transpose(1, 2)
    cls = state[p + "class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + state[p + "positional_embedding"]
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), state[p + "ln_pre.weight"], state[p + "ln_pre.bias"], 1e-5)
    layers = []
    for i in range(VISION["layers"]):
        r = f"{p}transformer.resblocks.{i}."
        h = F.layer_norm(x, (width,), state[r + "ln_1.weight"], state[r + "ln_1.bias"], 1e-5)
        q, k, v = F.linear(h, state[r + "attn.in_proj_weight"], state[r + "attn.in_proj_bias"]).chunk(
            3, dim=-1
        )
        heads = VISION["heads"]
        q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5), dim=-1)
        attn = (weights @ v).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(attn, state[r + "attn.out_proj.weight"], state[r + "attn.out_proj.bias"])
        h = F.layer_norm(x, (width,), state[r + "ln_2.weight"], state[r + "ln_2.bias"], 1e-5)
        h = F.linear(_gelu_quick(F.linear(h, state[r + "mlp.c_fc.weight"], state[r + "mlp.c_fc.bias"])),
                     state[r + "mlp.c_proj.weight"], state[r + "mlp.c_proj.bias"])  # fmt: skip
        x = x + h
        layers.append(x)
    pooled = F.layer_norm(x[:, 0], (width,), state[p + "ln_post.weight"], state[p + "ln_post.bias"], 1e-5)
    return {"last": x, "penultimate": layers[-2], "embeds": pooled @ state[p + "proj"]}


def _normalise(image: torch.Tensor) -> torch.Tensor:
    pixels = (image.movedim(-1, 1) * 255).clip(0, 255).round() / 255
    return (pixels - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def test_both_layouts_load_and_encode_as_the_vit_computed_by_hand(
    executor: Executor, vision_folders: Folders, vision: Any
) -> None:
    image = torch.rand(2, 28, 28, 3, generator=torch.Generator().manual_seed(2))
    expected = _by_hand(open_clip_layout(vision), _normalise(image))
    for name in ("vit_hf.safetensors", "vit_open_clip.safetensors"):
        (model,) = call(executor, "CLIPVisionLoader", clip_name=name)
        assert model.image_size == 28 and model.spec.config["hidden_act"] == "quick_gelu"
        (out,) = call(executor, "CLIPVisionEncode", clip_vision=model, image=image, crop="center")
        assert out.image_embeds.shape == (2, VISION["projection"])
        assert out.last_hidden_state.shape == out.penultimate_hidden_states.shape == (2, 5, VISION["hidden"])
        assert out["mm_projected"] is None
        torch.testing.assert_close(out.last_hidden_state, expected["last"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            out.penultimate_hidden_states, expected["penultimate"], atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(out.image_embeds, expected["embeds"], atol=1e-5, rtol=1e-4)


def test_crop_center_takes_the_middle_and_none_squeezes(executor: Executor, vision_folders: Folders) -> None:
    (model,) = call(executor, "CLIPVisionLoader", clip_name="vit_hf.safetensors")
    wide = torch.rand(1, 28, 56, 3, generator=torch.Generator().manual_seed(3))
    (center,) = call(executor, "CLIPVisionEncode", clip_vision=model, image=wide, crop="center")
    middle = model.encode_image(wide[:, :, 14:42].contiguous(), crop=True)
    torch.testing.assert_close(center.image_embeds, middle.image_embeds)
    (squeezed,) = call(executor, "CLIPVisionEncode", clip_vision=model, image=wide, crop="none")
    resized = F.interpolate(wide.movedim(-1, 1), size=(28, 28), mode="bicubic", antialias=True).movedim(1, -1)
    torch.testing.assert_close(squeezed.image_embeds, model.encode_image(resized, crop=True).image_embeds)
    assert not torch.allclose(center.image_embeds, squeezed.image_embeds)


def _shapes(
    hidden: int, layers: int, positions: int, projection: int, mlp: int
) -> dict[str, tuple[int, ...]]:
    shapes = {
        "vision_model.embeddings.patch_embedding.weight": (hidden, 3, 14, 14),
        "vision_model.embeddings.position_embedding.weight": (positions, hidden),
        "visual_projection.weight": (projection, hidden),
    }
    for i in range(layers):
        shapes[f"vision_model.encoder.layers.{i}.mlp.fc1.weight"] = (mlp, hidden)
    return shapes


@pytest.mark.parametrize(
    ("shapes", "name", "act", "size"),
    [
        (_shapes(1024, 24, 257, 768, 4096), "vit_l_14", "quick_gelu", 224),
        (_shapes(1024, 24, 577, 768, 4096), "vit_l_14_336", "quick_gelu", 336),
        (_shapes(1280, 32, 257, 1024, 5120), "vit_h_14", "gelu", 224),
        (_shapes(1664, 48, 257, 1280, 8192), "vit_bigg_14", "gelu", 224),
    ],
)
def test_released_encoders_take_their_stored_configs(
    shapes: dict[str, tuple[int, ...]], name: str, act: str, size: int
) -> None:
    spec = detect_vision(shapes)
    assert (spec.name, spec.config["hidden_act"], spec.image_size) == (name, act, size)
    assert spec.config["num_attention_heads"] == 16


def test_a_wrong_file_is_an_error_naming_node_input_and_file(
    executor: Executor, vision_folders: Folders
) -> None:
    prompt = {
        "1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "lora_like.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "CLIPVisionEncode",
              "inputs": {"clip_vision": ["1", 0], "image": ["2", 0], "crop": "center"}},
    }  # fmt: skip
    checked = validate_prompt(executor.registry, prompt | capture(executor, "3"))
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "bad", checked.outputs)
    assert result.status == "error"
    message = str(result.error)
    assert "CLIPVisionLoader" in message and "clip_name" in message and "lora_like.safetensors" in message
    assert "no CLIP vision encoder" in message, message


def test_comfy_clip_vision_module_loads_encodes_and_preprocesses(
    vision_folders: Folders, vision: Any
) -> None:
    comfy_compat.install()
    clip_vision = importlib.import_module("comfy.clip_vision")
    model_management = importlib.import_module("comfy.model_management")
    path = vision_folders.model_path("clip_vision", "vit_open_clip.safetensors")
    model = clip_vision.load(str(path))
    assert isinstance(model, clip_vision.ClipVisionModel)
    assert clip_vision.load(str(vision_folders.model_path("clip_vision", "lora_like.safetensors"))) is None
    # What IPAdapter_plus does: load the patcher, preprocess, call the module with intermediate_output=-2.
    model_management.load_model_gpu(model.patcher)
    image = torch.rand(1, 40, 30, 3)
    pixels = clip_vision.clip_preprocess(image.to(model.load_device), size=28).float()
    last, penultimate, embeds, projected = model.model(pixel_values=pixels, intermediate_output=-2)
    encoded = model.encode_image(image)
    torch.testing.assert_close(embeds, encoded.image_embeds)
    torch.testing.assert_close(penultimate, encoded["penultimate_hidden_states"])
    assert last.shape == (1, 5, VISION["hidden"]) and projected is None
    everything = model.model(pixel_values=pixels, intermediate_output="all")[1]
    assert everything.shape == (1, VISION["layers"], 5, VISION["hidden"])
    torch.testing.assert_close(everything[:, -2], penultimate)
    output = clip_vision.Output()
    output["image_embeds"] = embeds
    assert output.image_embeds is embeds
    state = open_clip_layout(vision, "embedder.model.visual.")
    from_sd = clip_vision.load_clipvision_from_sd(state, "embedder.model.visual.", True)
    torch.testing.assert_close(from_sd.encode_image(image).image_embeds, encoded.image_embeds)
    assert clip_vision.load_clipvision_from_sd({"x": torch.zeros(1)}) is None


def test_model_base_names_the_unclip_and_instructpix2pix_classes() -> None:
    comfy_compat.install()
    importlib.import_module("comfy.sd")
    model_base = importlib.import_module("comfy").model_base  # reached as an attribute, as packs do
    assert issubclass(model_base.SDXL_instructpix2pix, model_base.SDXL)
    assert issubclass(model_base.SD21UNCLIP, model_base.BaseModel)
    assert not issubclass(model_base.SDXLRefiner, model_base.SDXL)


def test_loader_lists_the_folder(executor: Executor, vision_folders: Folders) -> None:
    spec = executor.registry.get("CLIPVisionLoader")
    assert spec is not None
    assert {"vit_hf.safetensors", "vit_open_clip.safetensors"} <= set(spec.inputs[0].choices())  # type: ignore[misc]


def test_a_llava_projector_gives_mm_projected(loom_folders: Folders, vision: Any) -> None:
    """LLaVA's CLIP-ViT-L-336 files add `multi_modal_projector.*`: two linears with GELU over the
    penultimate layer's patch tokens (ComfyUI's mm_projected)."""
    from engine.diffusion.clip_vision import load_clip_vision

    gen = torch.Generator().manual_seed(4)
    projector = {
        "multi_modal_projector.linear_1.weight": torch.randn(24, VISION["hidden"], generator=gen) * 0.1,
        "multi_modal_projector.linear_1.bias": torch.randn(24, generator=gen) * 0.1,
        "multi_modal_projector.linear_2.weight": torch.randn(24, 24, generator=gen) * 0.1,
        "multi_modal_projector.linear_2.bias": torch.randn(24, generator=gen) * 0.1,
    }
    path = write(loom_folders.models["clip_vision"][0] / "llava.safetensors", hf_layout(vision) | projector)
    model = load_clip_vision(path)
    out = model.encode_image(torch.rand(1, 28, 28, 3))
    patches = out.penultimate_hidden_states[:, 1:]
    hidden = F.gelu(F.linear(patches, projector["multi_modal_projector.linear_1.weight"],
                             projector["multi_modal_projector.linear_1.bias"]))  # fmt: skip
    expected = F.linear(hidden, projector["multi_modal_projector.linear_2.weight"],
                        projector["multi_modal_projector.linear_2.bias"])  # fmt: skip
    torch.testing.assert_close(out.mm_projected, expected)
