"""Folders: ComfyUI's extra_model_paths.yaml, model file listing, and safe joins."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.folders import ExtraPathsError, Folders, UnsafePathError, safe_join


def test_extra_model_paths_yaml_like_comfyui(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    for sub in ("ckpts", "loras_a", "loras_b", "packs"):
        (shared / sub).mkdir(parents=True)
    (shared / "ckpts" / "model.safetensors").write_bytes(b"x")
    (shared / "ckpts" / "nested").mkdir()
    (shared / "ckpts" / "nested" / "other.ckpt").write_bytes(b"x")
    config = tmp_path / "conf" / "extra_model_paths.yaml"
    config.parent.mkdir()
    config.write_text(
        "comfyui:\n"
        "    base_path: ../shared\n"
        "    checkpoints: ckpts/\n"
        "    loras: |\n"
        "        loras_a\n"
        "        loras_b\n"
        "    custom_nodes: packs\n"
        "first:\n"
        "    base_path: ../shared\n"
        "    is_default: true\n"
        "    vae: ckpts\n"
    )
    folders = Folders.under(tmp_path / "loom")
    folders.add_extra_paths(config)
    assert folders.models["checkpoints"][-1] == (shared / "ckpts").resolve()
    assert folders.models["loras"][-2:] == [(shared / "loras_a").resolve(), (shared / "loras_b").resolve()]
    assert folders.custom_nodes[-1] == (shared / "packs").resolve()
    assert folders.models["vae"][0] == (shared / "ckpts").resolve()
    assert folders.model_files("checkpoints") == ["model.safetensors", "nested/other.ckpt"]
    assert folders.model_path("checkpoints", "nested/other.ckpt").is_file()


def test_new_model_files_appear_without_restart(tmp_path: Path) -> None:
    folders = Folders.under(tmp_path)
    folders.models["checkpoints"][0].mkdir(parents=True)
    assert folders.model_files("checkpoints") == []
    (folders.models["checkpoints"][0] / "new.safetensors").write_bytes(b"x")
    assert folders.model_files("checkpoints") == ["new.safetensors"]


@pytest.mark.parametrize("text", ["- just a list", "section: not-a-mapping", "bad: [yaml"])
def test_bad_extra_paths_file_names_the_file(tmp_path: Path, text: str) -> None:
    config = tmp_path / "extra.yaml"
    config.write_text(text)
    with pytest.raises(ExtraPathsError, match=r"extra\.yaml"):
        Folders.under(tmp_path).add_extra_paths(config)


@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "a/../../b", "nul\x00byte"])
def test_safe_join_refuses_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, name)


def test_safe_join_refuses_symlinks_out(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link").symlink_to("/etc")
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path / "inside", "link/passwd")
    assert safe_join(tmp_path / "inside", "ok.png") == (tmp_path / "inside" / "ok.png").resolve()
