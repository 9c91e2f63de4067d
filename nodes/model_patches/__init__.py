"""Nodes that return a patched clone of MODEL (ComfyUI's "advanced/model" category)."""
