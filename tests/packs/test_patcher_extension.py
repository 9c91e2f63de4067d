"""ComfyUI's wrapper/callback registries (comfy.patcher_extension), wrap_attn, the flux rope math
and the built-in classes' choice attributes, as packs (KJNodes, rgthree) use them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import comfy_compat
from engine.diffusion import patcher_extension as pe
from engine.diffusion.model_patcher import ModelPatcher
from engine.testing import PackHarness

HERE = Path(__file__).parent


@pytest.fixture
def shims() -> None:
    comfy_compat.install()


def test_model_options_registry_has_comfyuis_layout() -> None:
    def first(executor: Any) -> None: ...
    def second(executor: Any) -> None: ...

    options: dict[str, Any] = {}
    pe.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "a", first, options, is_model_options=True)
    pe.add_wrapper(pe.WrappersMP.APPLY_MODEL, second, options, is_model_options=True)
    assert options == {"transformer_options": {"wrappers": {"apply_model": {"a": [first], None: [second]}}}}
    assert pe.get_all_wrappers("apply_model", options, is_model_options=True) == [first, second]
    assert pe.get_wrappers_with_key("apply_model", "a", options["transformer_options"]) == [first]
    pe.add_callback(pe.CallbacksMP.ON_PRE_RUN, first, options["transformer_options"])
    assert pe.get_all_callbacks("on_pre_run", options, is_model_options=True) == [first]
    assert pe.get_callbacks_with_key("on_pre_run", "missing", {}) == []


def test_wrapper_executor_runs_wrappers_outside_in_then_the_original() -> None:
    calls: list[str] = []

    def outer(executor: Any, x: int) -> int:
        calls.append("outer")
        return executor(x + 1) * 10

    def inner(executor: Any, x: int) -> int:
        calls.append(f"inner:{executor.class_obj}")
        return executor(x * 2)

    run = pe.WrapperExecutor.new_class_executor(lambda x: x - 1, "obj", [outer, inner])
    assert run.execute(3) == ((3 + 1) * 2 - 1) * 10
    assert calls == ["outer", "inner:obj"]
    assert pe.WrapperExecutor.new_executor(lambda x: -x, []).execute(4) == -4


def test_merge_and_copy_nested_dicts() -> None:
    shared = [1]
    base = {"a": {"b": shared, "c": 1}, "d": 2}
    copied = pe.copy_nested_dicts(base)
    copied["a"]["b"].append(2)
    assert shared == [1] and copied["a"] is not base["a"]
    merged = pe.merge_nested_dicts(base, {"a": {"b": [3], "e": 4}, "d": 5})
    assert merged == {"a": {"b": [3, 1], "c": 1, "e": 4}, "d": 5}  # nested: dict2's items first
    assert base == {"a": {"b": [1], "c": 1}, "d": 2}


def test_model_patcher_stores_wrappers_copies_them_on_clone_and_runs_on_clone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    patcher = ModelPatcher(object(), load_device="cpu", offload_device="cpu")  # type: ignore[arg-type]
    seen: list[tuple[Any, Any]] = []
    patcher.add_callback(pe.CallbacksMP.ON_CLONE, lambda old, new: seen.append((old, new)))
    pe._warned.discard(("wrappers", "prepare_sampling"))
    with caplog.at_level(logging.WARNING, logger=pe.__name__):
        patcher.add_wrapper_with_key(pe.WrappersMP.PREPARE_SAMPLING, "k", len)
        patcher.add_wrapper_with_key(pe.WrappersMP.PREPARE_SAMPLING, "k", abs)
    assert [r.getMessage().count("prepare_sampling") for r in caplog.records] == [1]  # once per kind
    clone = patcher.clone()
    assert seen == [(patcher, clone)]
    clone.add_wrapper_with_key(pe.WrappersMP.PREPARE_SAMPLING, "k", min)
    assert patcher.get_wrappers("prepare_sampling", "k") == [len, abs]
    assert clone.get_all_wrappers("prepare_sampling") == [len, abs, min]
    clone.remove_wrappers_with_key("prepare_sampling", "k")
    assert clone.get_all_wrappers("prepare_sampling") == [] and patcher.wrappers["prepare_sampling"]["k"]


def test_wrap_attn_hands_the_call_to_an_override_once(shims: None) -> None:
    from comfy.ldm.modules.attention import wrap_attn  # type: ignore[import-not-found]

    @wrap_attn
    def attend(q: int, **kwargs: Any) -> tuple[int, bool]:
        return q, kwargs["_inside_attn_wrapper"]

    def override(func: Any, q: int, **kwargs: Any) -> Any:
        return ("override", func(q + 1, **kwargs))

    assert attend(1) == (1, True)
    assert attend(1, transformer_options={"optimized_attention_override": override}) == (
        "override",
        (2, True),
    )


def test_flux_rope_rotates_pairs_like_complex_multiplication(shims: None) -> None:
    from comfy.ldm.flux.math import apply_rope, rope  # type: ignore[import-not-found]

    pos = torch.arange(5, dtype=torch.float32).unsqueeze(0)
    freqs = rope(pos, 8, 10000)
    assert freqs.shape == (1, 5, 4, 2, 2)
    q = torch.randn(1, 5, 8)
    rq, rk = apply_rope(q, q, freqs)
    angles = pos[0, :, None] * 10000 ** (-torch.arange(0, 8, 2) / 8)
    expected = torch.view_as_real(
        torch.view_as_complex(q.reshape(1, 5, 4, 2)) * torch.polar(torch.ones(()), angles)
    )
    torch.testing.assert_close(rq, expected.reshape(1, 5, 8), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rq, rk)


def test_pack_reads_the_builtin_classes_choice_attributes(loom_pack: Any) -> None:
    harness: PackHarness = loom_pack(HERE / "extension_pack")
    pack = harness.packs[0]
    assert pack.nodes == ["ExtResizeChoices"] and pack.node_errors == {}
    import nodes  # type: ignore[import-not-found]

    spec = {i.name: i for i in harness.registry.get("ExtResizeChoices").inputs}
    assert list(spec["image_method"].choices()) == list(
        nodes.NODE_CLASS_MAPPINGS["ImageScale"].INPUT_TYPES()["required"]["upscale_method"][0]
    )
    assert "lanczos" in spec["image_method"].choices() and "bislerp" in spec["latent_method"].choices()
    assert list(spec["image_crop"].choices()) == ["disabled", "center"]
    result = harness.run(
        {
            "1": {
                "class_type": "ExtResizeChoices",
                "inputs": {"image_method": "area", "image_crop": "center", "latent_method": "bislerp"},
            }
        }
    )
    assert result.status == "success", result.error
    assert result.outputs["1"] == {"text": ["area/center/bislerp"]}


def test_lumina_feed_forward_is_gated_silu_with_comfyuis_hidden_size(shims: None) -> None:
    from comfy.ldm.lumina.model import FeedForward  # type: ignore[import-not-found]

    layer = FeedForward(8, 10, multiple_of=4, ffn_dim_multiplier=1.5)
    assert layer.w1.weight.shape == (16, 8) and layer.w2.weight.shape == (8, 16)  # 15 rounded up to 16
    x = torch.randn(2, 3, 8)
    expected = layer.w2(torch.nn.functional.silu(layer.w1(x)) * layer.w3(x))
    torch.testing.assert_close(layer(x), expected)


def test_taesd_networks_have_comfyuis_layers_and_scales(shims: None) -> None:
    from comfy.taesd.taesd import Block, Decoder, Encoder  # type: ignore[import-not-found]

    encoder, decoder = Encoder(latent_channels=4), Decoder(latent_channels=4)
    assert (len(encoder), len(decoder)) == (15, 20)  # ComfyUI's Sequential indexes: state dicts load
    assert "1.conv.0.weight" in encoder.state_dict() and "19.weight" in decoder.state_dict()
    assert encoder(torch.rand(1, 3, 32, 32)).shape == (1, 4, 4, 4)
    assert decoder(torch.rand(1, 4, 4, 4)).shape == (1, 3, 32, 32)
    assert isinstance(Block(8, 16).skip, torch.nn.Conv2d) and isinstance(Block(8, 8).skip, torch.nn.Identity)
