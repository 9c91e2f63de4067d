"""Loom Toolbox: small text, number and image helpers, and an example of a custom node pack.

Native Loom nodes (text.py, image.py) register because they subclass `engine.native.Node`;
ComfyUI-convention nodes (flow.py) register through NODE_CLASS_MAPPINGS, exactly as in ComfyUI.
"""

from .flow import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .image import ImageCropToMultiple, ImageSolidColor
from .text import NumberFormat, TextJoin, TextReplace

WEB_DIRECTORY = "./web"

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "WEB_DIRECTORY",
    "ImageCropToMultiple",
    "ImageSolidColor",
    "NumberFormat",
    "TextJoin",
    "TextReplace",
]
