"""Stable Diffusion glue between the model files (engine.models), the samplers (engine.sampling) and
the nodes: what travels along MODEL / CLIP / VAE / CONDITIONING / LATENT links, text encoding with
prompt weights, classifier-free guidance, LoRA patches, device placement and latent previews.

Importing this package is cheap; torch is imported by the modules that need it.
"""
