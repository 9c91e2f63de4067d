"""Recipe for Loom's shipped default model: procedural data, VAE, text encoder + UNet, evaluator.

See docs/default-model.md.
"""
