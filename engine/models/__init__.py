"""Loom model loading: checkpoint detection and loading, the offline CLIP tokenizer, single-file saving."""
