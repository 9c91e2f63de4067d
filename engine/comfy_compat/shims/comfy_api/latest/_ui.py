"""ComfyUI's V3 `ui` module: what an output node shows (`io.NodeOutput(ui=ui.PreviewImage(images))`).

Images are written with Loom's own PNG writer (`nodes.image.io.save_images`), with the running
prompt and extra_pnginfo embedded as Loom's SaveImage does.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from comfy_api.latest._io import FolderType
from comfy_api.latest._io_node import UIOutput
from engine import folders
from engine.context import current_context
from nodes.image.io import save_images


class SavedResult(dict[str, Any]):
    """One file the UI shows: {"filename", "subfolder", "type"}."""

    def __init__(self, filename: str, subfolder: str, type: FolderType | str) -> None:
        super().__init__(filename=filename, subfolder=subfolder, type=getattr(type, "value", type))

    @property
    def filename(self) -> str:
        return str(self["filename"])

    @property
    def subfolder(self) -> str:
        return str(self["subfolder"])

    @property
    def type(self) -> str:
        return str(self["type"])


class SavedImages(UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False) -> None:
        self.results, self.is_animated = results, is_animated

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"images": list(self.results)}
        if self.is_animated:
            shown["animated"] = (True,)
        return shown


def _folder(folder_type: FolderType | str) -> Path:
    return folders.current().by_type(getattr(folder_type, "value", folder_type))


class ImageSaveHelper:
    """Writes an IMAGE batch as PNG files (the workflow embedded) and describes them for the UI."""

    @staticmethod
    def save_images(
        images: Any,
        filename_prefix: str,
        folder_type: FolderType | str,
        cls: Any = None,
        compress_level: int = 4,
    ) -> list[SavedResult]:
        ctx = current_context.get() or SimpleNamespace(prompt={}, extra_pnginfo={})
        kind = getattr(folder_type, "value", folder_type)
        saved = save_images(images, _folder(kind), filename_prefix, kind, ctx, compress_level)  # type: ignore[arg-type]
        return [SavedResult(s["filename"], s["subfolder"], s["type"]) for s in saved]

    @staticmethod
    def get_save_images_ui(
        images: Any, filename_prefix: str, cls: Any = None, compress_level: int = 4
    ) -> SavedImages:
        return SavedImages(
            ImageSaveHelper.save_images(images, filename_prefix, FolderType.output, cls, compress_level)
        )


def _temp_prefix() -> str:
    return "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))


class PreviewImage(UIOutput):
    """Show images without keeping them: written to the temp folder."""

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        self.values = ImageSaveHelper.save_images(
            image, _temp_prefix(), FolderType.temp, cls, compress_level=1
        )
        self.animated = animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": list(self.values), "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    """A MASK shown as a greyscale image."""

    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        rgb = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(rgb, animated, cls, **kwargs)


class PreviewText(UIOutput):
    def __init__(self, value: str, **kwargs: Any) -> None:
        self.value = value

    def as_dict(self) -> dict[str, Any]:
        return {"text": (self.value,)}


class PreviewVideo(UIOutput):
    def __init__(self, values: list[Any], **kwargs: Any) -> None:
        self.values = values

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.values, "animated": (True,)}


class PreviewUI3D(UIOutput):
    def __init__(self, model_file: Any, camera_info: Any, **kwargs: Any) -> None:
        self.model_file, self.camera_info = model_file, camera_info

    def as_dict(self) -> dict[str, Any]:
        return {"result": [self.model_file, self.camera_info]}


__all__ = [
    "ImageSaveHelper",
    "PreviewImage",
    "PreviewMask",
    "PreviewText",
    "PreviewUI3D",
    "PreviewVideo",
    "SavedImages",
    "SavedResult",
]  # fmt: skip
