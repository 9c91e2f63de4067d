"""ComfyUI's "3d" category: nodes about cameras and 3-D scenes."""
