"""Files that are not loadable checkpoints fail with a clear ModelLoadError subclass, never a traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.models.checkpoint import load_checkpoint
from engine.models.errors import CorruptModelError, ModelLoadError, UnsupportedModelError
from engine.models.files import read_header

from .helpers import save_tiny


@pytest.fixture(scope="module")
def sd1_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("sd1", tmp_path_factory.mktemp("sd1"))[1]


def test_truncated_safetensors(sd1_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(sd1_file.read_bytes()[: sd1_file.stat().st_size // 2])
    with pytest.raises(CorruptModelError, match="truncated"):
        load_checkpoint(cut)


def test_truncated_inside_header(sd1_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(sd1_file.read_bytes()[:100])
    with pytest.raises(CorruptModelError, match="truncated"):
        read_header(cut)


@pytest.mark.parametrize(
    "data", [b"", b"abc", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", b"x" * 64]
)
def test_garbage_safetensors(tmp_path: Path, data: bytes) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data)
    with pytest.raises(CorruptModelError):
        load_checkpoint(bad)


def test_random_tensors_are_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "random.safetensors"
    save_file({"foo.weight": torch.randn(3, 3), "bar": torch.zeros(2)}, str(path))
    with pytest.raises(
        UnsupportedModelError, match=r"no UNet keys \(model\.diffusion_model\.\*\).*foo\.weight"
    ):
        load_checkpoint(path)


def test_lora_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lora.safetensors"
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
            "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
        },
        str(path),
    )
    with pytest.raises(UnsupportedModelError, match="looks like a LoRA"):
        load_checkpoint(path)


def test_vae_alone_is_named(sd1_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "vae.safetensors"
    vae = {k: v for k, v in load_file(str(sd1_file)).items() if k.startswith("first_stage_model.")}
    save_file(vae, str(path))
    with pytest.raises(UnsupportedModelError, match="VAE on its own"):
        load_checkpoint(path)


def test_missing_weights_are_reported(sd1_file: Path, tmp_path: Path) -> None:
    state = load_file(str(sd1_file))
    del state["model.diffusion_model.out.2.bias"]
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(UnsupportedModelError, match=r"conv_out\.bias"):
        load_checkpoint(path)


class _NotAllowed:
    pass


def test_ckpt_with_code_is_refused(sd1_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": load_file(str(sd1_file)), "payload": _NotAllowed()}, path)
    with pytest.raises(CorruptModelError, match="weights-only"):
        load_checkpoint(path)


def test_truncated_ckpt(sd1_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": load_file(str(sd1_file))}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CorruptModelError):
        load_checkpoint(path)


def test_plain_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(ModelLoadError):
        load_checkpoint(path)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown model file type"):
        load_checkpoint(tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_folder_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"model_index\.json"):
        load_checkpoint(tmp_path)
