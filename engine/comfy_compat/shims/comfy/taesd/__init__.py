"""ComfyUI's comfy.taesd package: the Tiny AutoEncoder's layers and networks (`taesd`)."""
