"""ComfyUI's comfy.k_diffusion package (its `sampling` module is what packs import)."""
