"""ComfyUI's `comfy_api.input`: the value types V3 inputs carry (images and masks are tensors)."""

from typing import Any

import torch

ImageInput = torch.Tensor
MaskInput = torch.Tensor
LatentInput = dict
AudioInput = dict
VideoInput = Any

__all__ = ["AudioInput", "ImageInput", "LatentInput", "MaskInput", "VideoInput"]
