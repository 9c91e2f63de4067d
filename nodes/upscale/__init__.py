"""Upscale models: loading ESRGAN-family files and upscaling images with them (ComfyUI's upscale nodes)."""
