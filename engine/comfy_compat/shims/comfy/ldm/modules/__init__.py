"""ComfyUI's comfy.ldm.modules package."""
