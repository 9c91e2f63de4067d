"""ComfyUI's comfy.ldm.lumina package: only the `model.FeedForward` layer packs reuse."""
