"""ComfyUI's comfy.text_encoders package (the text encoders of the newer model families)."""
