"""ComfyUI's comfy.ldm.flux package: only the rotary-embedding math (`math`); Loom loads no Flux model."""
