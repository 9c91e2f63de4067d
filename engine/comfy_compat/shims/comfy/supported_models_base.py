"""ComfyUI's comfy.supported_models_base: `BASE`, the class of every model config, and `ClipTarget`.

These are Loom's own config classes (engine.diffusion.model_configs): `model.model.model_config` of
every MODEL Loom loads is an instance of a BASE subclass, so packs subclassing BASE or testing
`isinstance` see what ComfyUI shows them. `matches`, the state-dict prefix helpers and
`set_inference_dtype` behave as ComfyUI's; `get_model` raises, since Loom does not build ComfyUI's
comfy.ldm networks from a config.
"""

from engine.diffusion.model_configs import BASE, ClipTarget

__all__ = ["BASE", "ClipTarget"]
