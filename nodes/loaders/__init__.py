"""Loaders: checkpoints, VAEs, LoRAs and the CLIP layer to read."""
