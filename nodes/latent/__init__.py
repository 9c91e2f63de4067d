"""Latent nodes: empty latents, resizing, masks, and the VAE's way in and out."""
