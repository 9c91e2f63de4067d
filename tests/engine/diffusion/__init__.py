"""Tests of engine.diffusion: the object model that travels on links (MODEL and its patches, CLIP, VAE,
embeddings) and the guiders."""
