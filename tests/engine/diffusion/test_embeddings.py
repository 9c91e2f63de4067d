"""Textual-inversion embeddings in prompts: every file layout, weights, positions, missing names."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.diffusion import handles
from engine.executor import Executor
from engine.folders import Folders
from engine.models.tiny import TEXT_WIDTH
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_sd_nodes import image_of, run

ROWS = 2


@pytest.fixture
def embeddings(sd_folders: Folders, tmp_path: Path) -> Path:
    """A fresh models/embeddings for each test (the checkpoints folder is shared by the session)."""
    folder = tmp_path / "models" / "embeddings"
    folder.mkdir(parents=True)
    sd_folders.models["embeddings"] = [folder]
    return folder


def clip_of(sd_folders: Folders, family: str) -> Any:
    loaded = handles.load(sd_folders.model_path("checkpoints", f"tiny_{family}.safetensors"))
    return loaded.clip


def vectors(seed: int, rows: int = ROWS) -> torch.Tensor:
    return torch.randn(rows, TEXT_WIDTH, generator=torch.Generator().manual_seed(seed))


def write(folder: Path, name: str, layout: str, seed: int = 1) -> torch.Tensor:
    value = vectors(seed)
    if layout == "a1111_pt":
        torch.save({"string_to_param": {"*": value}, "name": name, "step": 100}, folder / f"{name}.pt")
    elif layout == "a1111_safetensors":
        save_file({"emb_params": value}, str(folder / f"{name}.safetensors"))
    elif layout == "diffusers_bin":
        value = value[:1]
        torch.save({f"<{name}>": value[0]}, folder / f"{name}.bin")
    return value


def embedded(tokens: list[list[tuple[Any, float]]]) -> list[tuple[int, torch.Tensor, float]]:
    return [(i, t, w) for i, (t, w) in enumerate(tokens[0]) if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("layout", ["a1111_pt", "a1111_safetensors", "diffusers_bin"])
def test_each_sd1_layout_lands_at_its_token_positions(
    sd_folders: Folders, embeddings: Path, layout: str
) -> None:
    value = write(embeddings, "style", layout)
    clip = clip_of(sd_folders, "sd1")
    tokens = clip.tokenize("a embedding:style cat")
    found = embedded(tokens["l"])
    assert [i for i, _, _ in found] == list(range(2, 2 + value.shape[0]))
    assert all(torch.equal(t, row) for (_, t, _), row in zip(found, value, strict=True))
    assert len(tokens["l"][0]) == 77 and tokens["l"][0][2 + value.shape[0]][0] == 2368  # "cat" follows

    plain = clip.encode_from_tokens(clip.tokenize("a cat"))
    with_embedding = clip.encode_from_tokens(tokens)
    assert torch.equal(plain[:, :2], with_embedding[:, :2])  # causal: tokens before it are untouched
    assert not torch.allclose(plain[:, 2], with_embedding[:, 2])


def test_embedding_vectors_replace_the_token_embeddings(sd_folders: Folders, embeddings: Path) -> None:
    clip = clip_of(sd_folders, "sd1")
    encoder = clip.encoders[0]
    word = clip.tokenize("a cat")["l"][0][2][0]
    write_row = encoder.get_input_embeddings().weight[word].detach().clone().reshape(1, -1)
    save_file({"emb_params": write_row}, str(embeddings / "cat_again.safetensors"))
    same = clip.encode_from_tokens(clip.tokenize("a embedding:cat_again"), return_pooled=True)
    reference = clip.encode_from_tokens(clip.tokenize("a cat"), return_pooled=True)
    assert torch.equal(same[0], reference[0]) and torch.equal(same[1], reference[1])


def test_sdxl_file_gives_each_encoder_its_own_vectors(sd_folders: Folders, embeddings: Path) -> None:
    l_rows, g_rows = vectors(3), vectors(4)
    save_file({"clip_l": l_rows, "clip_g": g_rows}, str(embeddings / "xl.safetensors"))
    clip = clip_of(sd_folders, "sdxl")
    tokens = clip.tokenize("embedding:xl, a dog")
    assert list(tokens) == ["g", "l"]
    assert torch.equal(torch.stack([t for _, t, _ in embedded(tokens["l"])]), l_rows)
    assert torch.equal(torch.stack([t for _, t, _ in embedded(tokens["g"])]), g_rows)
    assert tokens["g"][0][-1] == (0, 1.0) and tokens["l"][0][-1] == (49407, 1.0)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    assert cond.shape == (1, 77, 2 * TEXT_WIDTH) and pooled is not None


@pytest.mark.parametrize(
    "text", ["embedding:style:1.2 cat", "(embedding:style:1.2) cat", "(embedding:style cat:1.2)"]
)
def test_weighted_embeddings(sd_folders: Folders, embeddings: Path, text: str) -> None:
    write(embeddings, "style", "a1111_safetensors")
    clip = clip_of(sd_folders, "sd1")
    tokens = clip.tokenize(text)
    assert [(i, w) for i, _, w in embedded(tokens["l"])] == [(1, 1.2), (2, 1.2)]
    assert tokens["l"][0][3] == (2368, 1.2 if text.endswith(":1.2)") else 1.0)
    plain = clip.encode_from_tokens(clip.tokenize(text.replace("1.2", "1.0")))
    assert not torch.equal(clip.encode_from_tokens(tokens)[:, 1:3], plain[:, 1:3])


def test_missing_embedding_warns_and_the_prompt_still_encodes(
    sd_folders: Folders, embeddings: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = clip_of(sd_folders, "sd1")
    with caplog.at_level(logging.WARNING):
        tokens = clip.tokenize("a embedding:nowhere cat")
    assert "embedding:nowhere does not exist" in caplog.text
    assert tokens == clip.tokenize("a cat")
    assert clip.encode_from_tokens(tokens).shape == (1, 77, TEXT_WIDTH)


def test_subfolders_and_unsafe_names(sd_folders: Folders, embeddings: Path) -> None:
    (embeddings / "styles").mkdir()
    save_file({"emb_params": vectors(5, 1)}, str(embeddings / "styles" / "deep.safetensors"))
    clip = clip_of(sd_folders, "sd1")
    assert len(embedded(clip.tokenize("embedding:deep")["l"])) == 1  # found below the folder too
    assert len(embedded(clip.tokenize("embedding:styles/deep")["l"])) == 1
    save_file({"emb_params": vectors(6, 1)}, str(embeddings.parent / "outside.safetensors"))
    assert embedded(clip.tokenize("embedding:../outside")["l"]) == []


def test_disabled_embeddings_keep_the_text(sd_folders: Folders, embeddings: Path) -> None:
    write(embeddings, "style", "a1111_pt")
    clip = clip_of(sd_folders, "sd1").clone()
    clip.embedding_directory = None
    assert embedded(clip.tokenize("embedding:style")["l"]) == []
    assert len(clip.tokenize("embedding:style")["l"][0]) == 77


def test_listed_by_name(sd_folders: Folders, embeddings: Path) -> None:
    write(embeddings, "style", "a1111_pt")
    write(embeddings, "other", "a1111_safetensors")
    assert sorted(sd_folders.model_files("embeddings")) == ["other.safetensors", "style.pt"]


def test_prompts_with_embeddings_through_the_nodes(
    executor: Executor, sd_folders: Folders, embeddings: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(embeddings, "style", "a1111_pt")

    def pixels(text: str) -> Any:
        executor.cache.clear()
        return image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", text=text)))

    plain = pixels("a red cat")
    assert not np.array_equal(pixels("a red embedding:style cat"), plain)
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(pixels("a red embedding:nowhere cat"), plain)
    assert "embedding:nowhere does not exist" in caplog.text
