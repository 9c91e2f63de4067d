"""Which family a CLIP loader's files make under a ComfyUI CLIP type (CLIPLoader, DualCLIPLoader, …), and
the errors for files a type does not use.

ComfyUI's loaders go by the type, except where a file tells its family by itself: a Qwen3 4B file is
Z-Image's under any type but flux/flux2 (newer ComfyUI), a Gemma 2 2B file alone is Lumina 2's and a Llama
3 8B file alone HiDream's under any type (ComfyUI 0.3.64).
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.models.errors import UnsupportedModelError
from engine.models.flow_families import CLIP_TYPE_FAMILIES, CLIP_TYPES_SUPPORTED, SD_CLIP_TYPES
from engine.models.text_encoders import Role

Shapes = Mapping[str, tuple[int, ...]]
CLIP_ROLES = ("clip_l", "clip_g")


def family_and_roles(clip_type: str, roles: list[Role], single: Shapes) -> tuple[str | None, list[Role]]:
    """The family of the files whose detected `roles` are given, and their roles within it; `single`:
    the shapes of the one file loaded alone (empty for several)."""
    family = CLIP_TYPE_FAMILIES.get(clip_type)
    if clip_type == "qwen_image" and roles in (["qwen3_4b"], ["qwen3_8b"]):
        # A Qwen3-layer model under type qwen_image is Qwen-Image 2.1's Qwen3-VL (qwen3vl_8b).
        roles, family = ["qwen3vl_8b"], "qwen_image21"
    if clip_type == "flux3" and roles in (["qwen3_4b"], ["qwen3_8b"]):
        # Flux 3's text encoder is Qwen3-VL 4B's language model (Qwen3 layers): role qwen3vl_4b.
        roles = ["qwen3vl_4b"]
    if "qwen3_4b" in roles and clip_type not in ("flux", "flux2"):
        family = "zimage"
    if roles == ["gemma2_2b"]:
        family = "lumina2"
    if roles == ["mistral3_24b"] and _is_llama3(single):
        family = "hidream"
    if family == "hidream":  # HiDream's language model is Llama 3.1 (Mistral's layout, no Qwen markers)
        roles = ["llama3_8b" if role == "mistral3_24b" else role for role in roles]
    return family, roles


def check_roles(names: list[str], roles: list[Role], family: str | None, clip_type: str) -> None:
    """Refuse, naming the file, what the family does not use (or gets twice), or a type Loom lacks."""
    if family is None and clip_type in SD_CLIP_TYPES:
        name, role = next((n, r) for n, r in zip(names, roles, strict=True) if r not in CLIP_ROLES)
        raise UnsupportedModelError(
            f"{name}: a {role} text encoder is not used by type {clip_type!r} (Stable Diffusion's CLIP files)"
        )
    if family is None:
        raise UnsupportedModelError(
            f"CLIP type {clip_type!r} is not supported by Loom yet; "
            f"supported: {', '.join(CLIP_TYPE_FAMILIES)} (and {', '.join(SD_CLIP_TYPES)} for CLIP files)"
        )
    allowed = CLIP_TYPES_SUPPORTED[family]
    seen: set[str] = set()
    for name, role in zip(names, roles, strict=True):
        if role not in allowed:
            raise UnsupportedModelError(
                f"{name}: a {role} text encoder is not used by type {clip_type!r} ({', '.join(allowed)})"
            )
        if role in seen:
            raise UnsupportedModelError(
                f"{name}: a second {role} text encoder; give each of {', '.join(allowed)} once"
            )
        seen.add(role)


def _is_llama3(shapes: Shapes) -> bool:
    """A language model in Mistral's layout with Llama 3's vocabulary (Mistral Small 3 has 131,072)."""
    from engine.models.llama3_encoder import VOCAB_SIZE

    embedding = shapes.get("model.embed_tokens.weight")
    return embedding is not None and embedding[0] == VOCAB_SIZE
