"""Primitives, strings and switches (ComfyUI's utils category)."""
