"""CLIP_VISION and CLIP_VISION_OUTPUT: what travels on those links, answering ComfyUI's comfy.clip_vision API.

`ClipVisionModel.encode_image(image, crop)` preprocesses as ComfyUI does (`clip_preprocess`: bicubic resize
with antialiasing so the short side fits, centre crop — or a plain resize to a square without crop —, values
rounded to 8 bits, then CLIP's mean/std) and returns an `Output` with ComfyUI's fields: `last_hidden_state`
(the last layer's tokens, before the final norm), `penultimate_hidden_states` (the second-to-last layer's),
`image_embeds` (the class token after the final norm and the visual projection) and `mm_projected` (LLaVA's
projection of the penultimate patch tokens, or None). SigLIP encoders (Flux Redux, USO) follow ComfyUI's
`siglip_vision_model`: mean and std 0.5, `last_hidden_state` and `image_embeds` both the last layer's patch
tokens after the final norm, and `all_hidden_states` [B, layers, T, D] beside the penultimate layer's.
`model` is a torch module called as ComfyUI's
CLIPVisionModelProjection is (packs such as IPAdapter_plus call it directly):
`model(pixel_values=..., intermediate_output=-2)` → (last, intermediate, image_embeds, mm_projected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from engine.diffusion.devices import manager
from engine.models.clip_vision import CLIP_MEAN, CLIP_STD, VisionSpec


class Output:
    """ComfyUI's CLIP_VISION_OUTPUT: attributes that read and write as items too."""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, item: Any) -> None:
        setattr(self, key, item)

    def __contains__(self, key: str) -> bool:
        return hasattr(self, key)


def clip_preprocess(
    image: torch.Tensor,
    size: int = 224,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    crop: bool = True,
) -> torch.Tensor:
    """IMAGE [B, H, W, C] in 0..1 → normalised pixel values [B, 3, size, size] (ComfyUI's clip_preprocess)."""
    image = image[..., :3].movedim(-1, 1)
    if image.shape[2] != size or image.shape[3] != size:
        if crop:
            scale = size / min(image.shape[2], image.shape[3])
            target = (round(scale * image.shape[2]), round(scale * image.shape[3]))
        else:
            target = (size, size)
        image = torch.nn.functional.interpolate(image, size=target, mode="bicubic", antialias=True)
        top, left = (image.shape[2] - size) // 2, (image.shape[3] - size) // 2
        image = image[:, :, top : top + size, left : left + size]
    image = torch.clip(255.0 * image, 0, 255).round() / 255.0
    mean_t = torch.tensor(mean, device=image.device, dtype=image.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, device=image.device, dtype=image.dtype).view(3, 1, 1)
    return (image - mean_t) / std_t


class VisionModule(torch.nn.Module):
    """transformers' CLIPVisionModelWithProjection (or SiglipVisionModel), called as ComfyUI's
    CLIPVisionModelProjection is."""

    def __init__(self, encoder: Any, projector: Any = None, siglip: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.siglip = siglip

    def forward(
        self, pixel_values: torch.Tensor, attention_mask: Any = None, intermediate_output: Any = None
    ) -> tuple[torch.Tensor, Any, torch.Tensor, Any]:
        """(last hidden state, intermediate — one layer's output for an int index (negative counts from the
        end), every layer's stacked [B, layers, T, D] for "all", else None —, image embeds, mm_projected)."""
        dtype = next(self.encoder.parameters()).dtype
        out = self.encoder(pixel_values=pixel_values.to(dtype), output_hidden_states=True)
        layers = out.hidden_states[1:]  # [0] is the embeddings' output; [k + 1] is layer k's
        intermediate = None
        if intermediate_output == "all":
            intermediate = torch.stack(layers, dim=1)
        elif intermediate_output is not None:
            intermediate = layers[int(intermediate_output)]
        projected = None
        if self.projector is not None:
            penultimate = layers[-2][:, 1:]
            hidden = torch.nn.functional.gelu(self.projector["linear_1"](penultimate))
            projected = self.projector["linear_2"](hidden)
        # SigLIP has no pooled embedding: ComfyUI's image_embeds are its normed tokens.
        embeds = out.last_hidden_state if self.siglip else out.image_embeds
        return out.last_hidden_state, intermediate, embeds, projected


class _VisionPatcher:
    """What `comfy.model_management.load_model_gpu(clip_vision.patcher)` needs: the module as `.model`."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.load_device = manager().device
        self.offload_device = torch.device("cpu")

    def model_size(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())


class ClipVisionModel:
    """A loaded CLIP vision encoder (ComfyUI's comfy.clip_vision.ClipVisionModel API)."""

    def __init__(self, spec: VisionSpec, encoder: Any, projector: Any = None) -> None:
        self.spec = spec
        self.image_size = spec.image_size
        mean, std = spec.mean_std
        self.image_mean = list(mean)
        self.image_std = list(std)
        self.return_all_hidden_states = spec.kind == "siglip"
        self.model = VisionModule(encoder, projector, siglip=spec.kind == "siglip")
        self.patcher = _VisionPatcher(self.model)
        self.dtype = next(encoder.parameters()).dtype

    @property
    def load_device(self) -> torch.device:
        return manager().device

    def load_sd(self, sd: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """Load transformers-named weights; returns (missing, unexpected) keys as torch does."""
        result = self.model.encoder.load_state_dict(dict(sd), strict=False)
        return list(result.missing_keys), list(result.unexpected_keys)

    def get_sd(self) -> dict[str, torch.Tensor]:
        return dict(self.model.encoder.state_dict())

    def encode_image(self, image: torch.Tensor, crop: bool = True) -> Output:
        """CLIPVisionEncode: preprocess IMAGE [B, H, W, C] and encode it (see the module docstring)."""
        device = manager().use(self.model)
        pixels = clip_preprocess(
            image.to(device).float(), self.image_size, self.image_mean, self.image_std, crop=crop
        )
        layers: Any = "all" if self.return_all_hidden_states else -2
        with torch.no_grad():
            last, hidden, embeds, projected = self.model(pixel_values=pixels, intermediate_output=layers)
        outputs = Output()
        outputs["last_hidden_state"] = last.float().cpu()
        outputs["image_embeds"] = embeds.float().cpu()
        if self.return_all_hidden_states:
            outputs["all_hidden_states"] = hidden.float().cpu()
            outputs["penultimate_hidden_states"] = outputs["all_hidden_states"][:, -2]
        else:
            outputs["penultimate_hidden_states"] = hidden.float().cpu()
        outputs["mm_projected"] = projected.float().cpu() if projected is not None else None
        return outputs


def load_clip_vision(path: str | Path) -> ClipVisionModel:
    """A CLIP vision file in either layout (see engine.models.clip_vision); open_clip's keys may sit
    under `visual.`."""
    from engine.models.clip_vision import find_layout
    from engine.models.files import open_state_dict

    state, metadata = open_state_dict(path)
    prefix = "visual." if find_layout(state.keys(), "visual.") else ""
    return clip_vision_from_state(state, prefix, metadata, Path(path).name)


def clip_vision_from_state(
    state: Mapping[str, Any], prefix: str = "", metadata: Mapping[str, str] | None = None, name: str = ""
) -> ClipVisionModel:
    """The vision encoder under `prefix` of a state dict (a clip_vision file, or a checkpoint's)."""
    from engine.models.clip_vision import build_vision_model, detect_vision, hf_state
    from engine.models.errors import UnsupportedModelError

    try:
        named = hf_state(state, prefix)
        spec = detect_vision({k: tuple(v.shape) for k, v in named.items()}, metadata)
        encoder, projector = build_vision_model(spec, named, manager().dtype("text"))
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{name}: {exc}" if name else str(exc)) from exc
    return ClipVisionModel(spec, encoder, projector)


# Where checkpoints keep a CLIP vision encoder (ComfyUI's clip_vision_prefix of each family).
VISION_PREFIXES = (
    "embedder.model.visual.",  # SD2.1 unCLIP
    "conditioner.embedders.0.open_clip.model.visual.",  # Stable Video Diffusion
    "cond_stage_model.model.visual.",  # Zero123
)


def embedded_clip_vision(path: str | Path) -> ClipVisionModel | None:
    """The CLIP vision encoder stored inside a checkpoint file, or None when it holds none."""
    from engine.models.clip_vision import find_layout
    from engine.models.files import open_state_dict

    state, metadata = open_state_dict(path)
    prefix = next((p for p in VISION_PREFIXES if find_layout(state.keys(), p)), None)
    return None if prefix is None else clip_vision_from_state(state, prefix, metadata, Path(path).name)
