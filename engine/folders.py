"""Where Loom reads and writes files: output, input and temp folders, and the model folders."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_KINDS = (
    "checkpoints",
    "vae",
    "loras",
    "embeddings",
    "vae_approx",
    "clip",
    "unet",
    "upscale_models",
    "controlnet",
    "diffusion_models",
    "text_encoders",
    "hypernetworks",
    "configs",
    "diffusers",
    "clip_vision",
    "style_models",
    "gligen",
    "model_patches",
)
# ComfyUI's newer kinds read their legacy folders too: diffusion models also from models/unet, text
# encoders also from models/clip; ControlNets also from models/t2i_adapter.
KIND_FOLDERS = {
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "controlnet": ("controlnet", "t2i_adapter"),
}


class UnsafePathError(ValueError):
    """A file name that would leave its folder (`..`, an absolute path, a NUL byte, a symlink out)."""


class ExtraPathsError(ValueError):
    """An --extra-model-paths-config file that cannot be used; the message names the file and entry."""


@dataclass
class Folders:
    output: Path
    input: Path
    temp: Path
    models: dict[str, list[Path]] = field(default_factory=dict)
    custom_nodes: list[Path] = field(default_factory=lambda: [PROJECT_ROOT / "custom_nodes"])

    @classmethod
    def under(cls, base: Path, models_base: Path | None = None) -> Folders:
        models_base = models_base or base / "models"
        return cls(
            output=base / "output",
            input=base / "input",
            temp=base / "temp",
            models={
                kind: [models_base / name for name in KIND_FOLDERS.get(kind, (kind,))] for kind in MODEL_KINDS
            },
        )

    def by_type(self, folder_type: str) -> Path:
        """The folder named by ComfyUI's `type` field: output, input or temp."""
        folders = {"output": self.output, "input": self.input, "temp": self.temp}
        if folder_type not in folders:
            raise UnsafePathError(f"unknown folder type {folder_type!r}; expected output, input or temp")
        return folders[folder_type]

    def add_extra_paths(self, config_file: Path) -> None:
        """Add the folders of a ComfyUI `extra_model_paths.yaml`: named sections with an optional
        `base_path` (relative to the file) and one key per folder kind, each holding one path or
        several on separate lines; `custom_nodes` adds node pack folders; `is_default: true` puts a
        section's folders first."""
        for section, entries in _read_extra_paths(config_file).items():
            base = Path(os.path.expanduser(str(entries.get("base_path", ""))))
            base = base if base.is_absolute() else config_file.parent / base
            first = bool(entries.get("is_default"))
            for kind, value in entries.items():
                if kind in ("base_path", "is_default"):
                    continue
                if not isinstance(value, str):
                    raise ExtraPathsError(f"{config_file}: {section}.{kind} must be a path or lines of paths")
                paths = [
                    (base / os.path.expanduser(line.strip())).resolve()
                    for line in value.splitlines()
                    if line.strip()
                ]
                existing = self.custom_nodes if kind == "custom_nodes" else self.models.setdefault(kind, [])
                if first:
                    existing[:0] = paths
                else:
                    existing.extend(paths)

    def model_files(self, kind: str) -> list[str]:
        """Files of one model kind, as relative names, across all its folders (read fresh each call)."""
        names: set[str] = set()
        for root in self.models.get(kind, []):
            if root.is_dir():
                for path in root.rglob("*"):
                    if path.is_file() and not path.name.startswith("."):
                        names.add(path.relative_to(root).as_posix())
        return sorted(names)

    def model_path(self, kind: str, name: str) -> Path:
        for root in self.models.get(kind, []):
            path = safe_join(root, name)
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"no {kind} file named {name!r} in {', '.join(map(str, self.models.get(kind, [])))}"
        )


def _read_extra_paths(config_file: Path) -> dict[str, dict[str, object]]:
    import yaml

    try:
        loaded = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ExtraPathsError(f"{config_file}: cannot read: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise ExtraPathsError(
            f"{config_file}: expected named sections, each a mapping of folder kinds to paths"
        )
    return loaded


_current: Folders | None = None


def configure(folders: Folders) -> None:
    """Set the process-wide folders (ComfyUI's folder_paths is process-wide too; packs rely on it)."""
    global _current
    _current = folders


def current() -> Folders:
    global _current
    if _current is None:
        _current = Folders.under(PROJECT_ROOT)
    return _current


# The longest file name (one path component) Linux and macOS file systems accept.
MAX_NAME_BYTES = 255


def safe_join(root: Path, *parts: str) -> Path:
    """root/parts, refusing anything that would resolve outside root."""
    for part in parts:
        if "\x00" in part or os.path.isabs(part) or part.startswith(("/", "\\")):
            raise UnsafePathError(f"{part!r} is not a relative file name")
        if any(len(name.encode()) > MAX_NAME_BYTES for name in re.split(r"[/\\]", part)):
            raise UnsafePathError(f"{part[:100]!r}... has a name longer than {MAX_NAME_BYTES} bytes")
    try:
        root = root.resolve()
        path = root.joinpath(*parts).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop, a path too long for the system
        raise UnsafePathError(f"{'/'.join(parts)[:200]!r} cannot be resolved: {exc}") from None
    if path != root and root not in path.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} leaves its folder")
    return path
