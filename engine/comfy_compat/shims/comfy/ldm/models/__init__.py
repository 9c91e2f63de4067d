"""ComfyUI's comfy.ldm.models package (the LDM autoencoder classes; none is usable in Loom)."""
