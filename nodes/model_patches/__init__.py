"""Nodes that return a patched clone of MODEL (ComfyUI's "advanced/model" category and its kin): model
sampling object patches, guidance functions, UNet block patches and weight merges, all through the
ModelPatcher API."""
