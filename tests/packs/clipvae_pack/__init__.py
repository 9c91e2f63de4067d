"""A pack that uses CLIP, VAE and comfy.sd/comfy.utils the way real ComfyUI packs do: module-level
`import comfy.*`, `clip.tokenize` → `clip.encode_from_tokens`, `vae.decode_tiled`, `tiled_scale`."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
