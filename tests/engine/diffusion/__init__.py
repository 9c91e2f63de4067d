"""Tests of the object model that travels on links: CLIP, VAE, embeddings."""
