"""ComfyUI's folder_paths over Loom's folders (`engine.folders`): model, input, output, temp folders.

Module attributes that packs read (`output_directory`, `models_dir`, ...) are computed on access,
so they follow Loom's configured folders; `folder_names_and_paths` is a live view of them. Every
folder kind ComfyUI knows answers (a kind Loom has no folder for gets ComfyUI's default folders
under models/ on first use), and so does `custom_nodes` (the folders packs are loaded from).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from engine import folders
from engine.folders import safe_join
from nodes.image.io import expand_prefix, next_counter

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
_extensions: dict[str, set[str]] = {"configs": {".yaml"}, "diffusers": {"folder"}, "classifiers": {""}}
CUSTOM_NODES = "custom_nodes"
# ComfyUI's model kinds and the folders under models/ each one reads (several for renamed kinds).
COMFY_KINDS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",), "configs": ("configs",), "loras": ("loras",), "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"), "diffusion_models": ("unet", "diffusion_models"),
    "clip_vision": ("clip_vision",), "style_models": ("style_models",), "embeddings": ("embeddings",),
    "diffusers": ("diffusers",), "vae_approx": ("vae_approx",), "controlnet": ("controlnet", "t2i_adapter"),
    "gligen": ("gligen",), "upscale_models": ("upscale_models",), "hypernetworks": ("hypernetworks",),
    "photomaker": ("photomaker",), "classifiers": ("classifiers",), "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
}  # fmt: skip


def _kind_paths(kind: str) -> list[Path]:
    """The folders of a model kind (ComfyUI's defaults added to Loom's table the first time)."""
    models = folders.current().models
    if kind not in models and kind in COMFY_KINDS:
        paths: list[Path] = []
        for sub in COMFY_KINDS[kind]:
            for path in models.get(sub, [folders.PROJECT_ROOT / "models" / sub]):
                if path not in paths:
                    paths.append(path)
        models[kind] = paths
    return models[kind]


class _FolderTable(MutableMapping[str, tuple[list[str], set[str]]]):
    """`{kind: ([folder, ...], {extension, ...})}` backed by Loom's model folders."""

    def __getitem__(self, kind: str) -> tuple[list[str], set[str]]:
        if kind == CUSTOM_NODES:
            return [str(p) for p in folders.current().custom_nodes], set()
        paths = _kind_paths(kind)
        return [str(p) for p in paths], _extensions.get(kind, supported_pt_extensions)

    def __setitem__(self, kind: str, value: tuple[list[str], set[str]]) -> None:
        paths, extensions = value
        if kind == CUSTOM_NODES:
            folders.current().custom_nodes = [Path(p) for p in paths]
            return
        folders.current().models[kind] = [Path(p) for p in paths]
        _extensions[kind] = set(extensions)

    def __delitem__(self, kind: str) -> None:
        del folders.current().models[kind]
        _extensions.pop(kind, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(dict.fromkeys([*COMFY_KINDS, *folders.current().models, CUSTOM_NODES])))

    def __len__(self) -> int:
        return len(list(iter(self)))


folder_names_and_paths = _FolderTable()


def __getattr__(name: str) -> Any:
    current = folders.current()
    dynamic = {
        "output_directory": current.output,
        "input_directory": current.input,
        "temp_directory": current.temp,
        "user_directory": current.output.parent / "user",
        "base_path": folders.PROJECT_ROOT,
        "models_dir": folders.PROJECT_ROOT / "models",
    }
    if name in dynamic:
        return str(dynamic[name])
    raise AttributeError(f"module 'folder_paths' has no attribute {name!r}")


def get_output_directory() -> str:
    return str(folders.current().output)


def get_input_directory() -> str:
    return str(folders.current().input)


def get_temp_directory() -> str:
    return str(folders.current().temp)


def get_user_directory() -> str:
    return str(folders.current().output.parent / "user")


def get_directory_by_type(type_name: str) -> str | None:
    try:
        return str(folders.current().by_type(type_name))
    except ValueError:
        return None


def get_folder_paths(folder_name: str) -> list[str]:
    if folder_name == CUSTOM_NODES:
        return [str(p) for p in folders.current().custom_nodes]
    return [str(p) for p in _kind_paths(folder_name)] if folder_name in folder_names_and_paths else []


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    """Add a folder to a model kind (first in the search order when `is_default`)."""
    if folder_name == CUSTOM_NODES:
        paths = folders.current().custom_nodes
    else:
        paths = (
            _kind_paths(folder_name)
            if folder_name in COMFY_KINDS
            else folders.current().models.setdefault(folder_name, [])
        )
    path = Path(full_folder_path)
    if path in paths:
        paths.remove(path)
    paths.insert(0, path) if is_default else paths.append(path)


def get_filename_list(folder_name: str) -> list[str]:
    """Model files of a kind (relative names, sorted) with an extension ComfyUI expects for it."""
    extensions = _extensions.get(folder_name, supported_pt_extensions)
    if folder_name in COMFY_KINDS:
        _kind_paths(folder_name)
    names = folders.current().model_files(folder_name)
    if not extensions:
        return names
    return [n for n in names if os.path.splitext(n)[1].lower() in extensions]


def get_full_path(folder_name: str, filename: str) -> str | None:
    if folder_name in COMFY_KINDS:
        _kind_paths(folder_name)
    try:
        return str(folders.current().model_path(folder_name, filename))
    except (FileNotFoundError, ValueError):
        return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """`"a.png [output]"` -> ("a.png", output folder); no annotation -> (name, None)."""
    for kind in ("output", "input", "temp"):
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], get_directory_by_type(kind)
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base = annotated_filepath(name)
    base = base or default_dir or get_input_directory()
    return str(safe_join(Path(base), name))


def exists_annotated_filepath(name: str) -> bool:
    return os.path.exists(get_annotated_filepath(name))


def get_save_image_path(
    filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0
) -> tuple[str, str, int, str, str]:
    """(folder, file name, next counter, subfolder, prefix) for `<name>_<counter>_.png` files."""
    filename_prefix = expand_prefix(filename_prefix, image_width, image_height)
    subfolder, filename = os.path.split(os.path.normpath(filename_prefix))
    full_output_folder = safe_join(Path(output_dir), subfolder) if subfolder else Path(output_dir).resolve()
    full_output_folder.mkdir(parents=True, exist_ok=True)
    counter = next_counter(full_output_folder, filename)
    return str(full_output_folder), filename, counter, subfolder, filename_prefix


def filter_files_extensions(files: list[str], extensions: set[str]) -> list[str]:
    return sorted(f for f in files if not extensions or os.path.splitext(f)[1].lower() in extensions)


def recursive_search(
    directory: str, excluded_dir_names: list[str] | None = None
) -> tuple[list[str], dict[str, float]]:
    """Files under a folder as relative paths, and the folders seen (with their modification times)."""
    excluded = set(excluded_dir_names or [])
    found: list[str] = []
    seen: dict[str, float] = {}
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = [d for d in dirs if d not in excluded]
        seen[root] = os.path.getmtime(root)
        found.extend(os.path.relpath(os.path.join(root, f), directory) for f in files)
    return sorted(f.replace(os.sep, "/") for f in found), seen
