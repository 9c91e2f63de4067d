"""Memory behaviour of the flow families' loading: lazy reads (each tensor read from the file once, in the
dtype it is assigned in, nothing read for detection) and text encoders released after encoding."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.models.files import LazyStateDict
from tests.nodes.flow_fixtures import write_flux_files
from tests.nodes.flow_fixtures_new import write_zimage_files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow_memory")
    write_flux_files(root / "flux")
    write_zimage_files(root / "zimage")
    return root


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    original = LazyStateDict.__getitem__

    def counting(self: LazyStateDict, key: str) -> Any:
        counts[key] += 1
        tensor = original(self, key)
        counts[f"dtype:{tensor.dtype}"] += 1
        return tensor

    monkeypatch.setattr(LazyStateDict, "__getitem__", counting)
    return counts


def _tensors(counts: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counts.items() if not k.startswith("dtype:")})


def test_diffusion_model_reads_each_tensor_once_in_compute_dtype(files: Path, reads: Counter[str]) -> None:
    from engine.models.files import read_header
    from engine.models.flow_families import load_diffusion_model

    path = files / "zimage" / "diffusion_models" / "z_image_turbo_bf16.safetensors"
    load_diffusion_model(path)
    read = _tensors(reads)
    unused = {"norm_final.weight"}  # in the released file; the model has no such weight
    assert set(read) == set(read_header(path).shapes) - unused
    assert max(read.values()) == 1
    assert set(k for k in reads if k.startswith("dtype:")) == {"dtype:torch.float32"}  # bf16 file, fp32 CPU


def test_checkpoint_reads_each_tensor_once(files: Path, reads: Counter[str]) -> None:
    from engine.diffusion import handles
    from engine.models.files import read_header

    path = files / "flux" / "checkpoints" / "flux1-dev-fp8.safetensors"
    loaded = handles.load(path)
    read = _tensors(reads)
    assert loaded.clip is not None and loaded.vae is not None
    assert max(read.values()) == 1 and len(read) == len(read_header(path).shapes)


def test_qwen_file_reads_only_the_language_model(files: Path, reads: Counter[str]) -> None:
    from engine.models.flow_families import load_clip

    load_clip([files / "zimage" / "text_encoders" / "qwen_3_4b.safetensors"], "lumina2")
    read = _tensors(reads)
    assert "lm_head.weight" not in read and max(read.values()) == 1


def test_text_encoders_are_released_after_encoding(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.diffusion import devices
    from engine.models.flow_families import load_clip

    released: list[Any] = []
    manager = devices.manager()
    monkeypatch.setattr(manager, "release", lambda *modules: released.extend(modules))
    clip = load_clip([files / "zimage" / "text_encoders" / "qwen_3_4b.safetensors"], "lumina2")
    clip.encode_from_tokens(clip.tokenize("a fox"))
    assert released and all(isinstance(m, torch.nn.Module) for m in released)
    assert released[0] is clip.encoders[0]


def test_fp8_storage_converts_each_matrix_as_it_is_read(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.models.flow_families import load_diffusion_model
    from engine.models.flow_fill import TypedReader

    given: Counter[str] = Counter()
    original = TypedReader.__getitem__

    def recording(self: TypedReader, key: str) -> Any:
        tensor = original(self, key)
        if tensor.ndim == 2 and key.endswith(".weight"):
            given[str(tensor.dtype)] += 1
        return tensor

    monkeypatch.setattr(TypedReader, "__getitem__", recording)
    path = files / "zimage" / "diffusion_models" / "z_image_turbo_bf16.safetensors"
    model = load_diffusion_model(path, "fp8_e4m3fn")
    # every matrix came out of the reader in fp8, but the timestep and caption embedders' (kept in fp32)
    assert (
        given["torch.float8_e4m3fn"] > 0 and given["torch.float32"] == 3
    )  # t_embedder.mlp.{0,2}, cap_embedder.1
    assert set(given) == {"torch.float8_e4m3fn", "torch.float32"}
    unet = model.unet
    assert unet.layers[0].feed_forward.w1.weight.dtype == torch.float8_e4m3fn
    assert unet.t_embedder.mlp[0].weight.dtype == torch.float32
