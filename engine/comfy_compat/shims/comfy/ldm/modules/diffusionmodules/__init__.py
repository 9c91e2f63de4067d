"""ComfyUI's comfy.ldm.modules.diffusionmodules package."""
