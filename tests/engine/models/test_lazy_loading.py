"""Lazy loading: tensors read by key straight into the target dtype give exactly what eager loading gave."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.models.checkpoint import LoadedCheckpoint, build_from_state_dict, load_checkpoint
from engine.models.detect import detect_model
from engine.models.files import LazyStateDict, load_state_dict, open_state_dict, read_header
from engine.models.save import save_single_file
from engine.models.tiny import build_tiny

from .helpers import assert_same_weights, sd_context, unet_output


def _eager(path: Path, dtype: torch.dtype) -> LoadedCheckpoint:
    """The loading path before lazy reads: the whole file in memory, then every tensor copied and cast.

    The copy matters: safetensors' tensors can sit at unaligned offsets, where CPU kernels take other
    code paths and results differ in the last bits.
    """
    eager = load_file(str(path))
    state = {k: v.to(dtype if v.is_floating_point() else v.dtype, copy=True) for k, v in eager.items()}
    header = read_header(path)
    spec = detect_model(dict(header.shapes), header.metadata, state.__getitem__)
    return build_from_state_dict(spec, state, header.metadata, dtype)


def _outputs(loaded: LoadedCheckpoint) -> list[torch.Tensor]:
    context, pooled = sd_context(loaded.text_encoders, loaded.pad_ids, loaded.family, "a red square")
    with torch.no_grad():
        noise = unet_output(loaded.unet, loaded.family, context, pooled)
        assert loaded.vae is not None
        image = loaded.vae.decode(noise[:, :4] / loaded.vae_scaling_factor).sample
    return [context, noise, image]


FILES = [("sd1", torch.float16), ("sd2", None), ("sdxl", torch.bfloat16)]


@pytest.mark.parametrize(("family", "file_dtype"), FILES)
def test_lazy_load_matches_eager_bit_for_bit(
    tmp_path: Path, family: str, file_dtype: torch.dtype | None
) -> None:
    models = build_tiny(family)  # type: ignore[arg-type]
    path = save_single_file(
        tmp_path / "m.safetensors",
        models.unet,
        models.vae,
        models.text_encoders,
        models.family,
        None,
        models.prediction_type,
        file_dtype,
    )
    lazy = load_checkpoint(path, dtype=torch.float32)
    eager = _eager(path, torch.float32)
    models_lazy = (lazy.unet, lazy.vae, *lazy.text_encoders)
    texts = {id(m) for m in lazy.text_encoders}
    for a, b in zip(models_lazy, (eager.unet, eager.vae, *eager.text_encoders), strict=True):
        # A half-precision file's text encoders stay in its dtype (computed in fp32, layer by layer).
        stored = file_dtype if id(a) in texts and file_dtype is not None else torch.float32
        assert_same_weights(a.float() if stored == torch.float32 else _as_float(a), b)
        for name, tensor in [*a.named_parameters(), *a.named_buffers()]:
            assert tensor.device.type == "cpu", f"{name} left on {tensor.device}"
            assert tensor.is_contiguous(), name
            if tensor.is_floating_point():
                assert tensor.dtype == stored, name
    for x, y in zip(_outputs(lazy), _outputs(eager), strict=True):
        assert x.dtype == y.dtype == torch.float32
        assert torch.equal(x, y)


def _as_float(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of `model`'s weights under the same names (the model itself is left as it is)."""
    import copy

    return copy.deepcopy(model).float()


def test_lazy_state_dict_reads_by_key_in_any_dtype(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "half": torch.randn(3, 5, generator=gen).half(),
        "bf16": torch.randn(7, generator=gen).bfloat16(),
        "float": torch.randn(2, 2, 2, generator=gen),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path), metadata={"note": "x"})
    as_is, metadata = open_state_dict(path)
    assert isinstance(as_is, LazyStateDict)
    assert metadata == {"note": "x"}
    assert list(as_is) == list(load_file(str(path)))
    for key, expected in tensors.items():
        got = as_is[key]
        assert got.dtype == expected.dtype and torch.equal(got, expected), key
        got[...] = 0 if got.numel() else got  # writable memory of its own, not a read-only file view
    converted, _ = open_state_dict(path, torch.float32)
    for key, expected in tensors.items():
        want = expected.float() if expected.is_floating_point() else expected
        assert converted[key].dtype == want.dtype and torch.equal(converted[key], want), key
    eager, _ = load_state_dict(path)
    assert all(torch.equal(eager[k], v) for k, v in tensors.items())


def test_pickle_checkpoints_convert_once(tmp_path: Path) -> None:
    path = tmp_path / "w.ckpt"
    weights = {"a": torch.randn(4, 4).half(), "n": torch.tensor([3])}
    torch.save({"state_dict": weights}, path)
    state, metadata = open_state_dict(path, torch.float32)
    assert metadata == {}
    assert state["a"].dtype == torch.float32 and torch.equal(state["a"], weights["a"].float())
    assert torch.equal(state["n"], weights["n"])


def test_lora_file_loads_the_same_tensors(tmp_path: Path) -> None:
    """LoRA files go through `load_state_dict`: same keys, dtypes and values as safetensors' own loader."""
    lora = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 32).half(),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(32, 4).half(),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
    }
    path = tmp_path / "l.safetensors"
    save_file(lora, str(path))
    state, _ = load_state_dict(path)
    reference = load_file(str(path))
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
