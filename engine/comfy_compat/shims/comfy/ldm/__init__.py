"""ComfyUI's comfy.ldm package: only the attention functions apply to Loom's diffusers UNet."""
