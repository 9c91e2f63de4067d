"""Sampling nodes: KSampler and ComfyUI's custom sampling (samplers, schedulers, guiders, noise)."""
