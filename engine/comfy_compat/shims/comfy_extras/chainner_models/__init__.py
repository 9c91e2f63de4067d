"""ComfyUI's comfy_extras.chainner_models: upscale-model loading, now spandrel's (as in ComfyUI)."""
