"""A test pack importing the way Impact-Pack, WAS and KJNodes do: NOISE/guider classes from
comfy_extras.nodes_custom_sampler, TAESD from latent_preview, comfy.diffusers_convert,
comfy_extras.chainner_models, a wrapped execution.PromptExecutor.handle_execution_error, and
V3 nodes with DynamicCombo, Autogrow.TemplateNames, Tracks, BoundingBox and Types.VideoContainer."""

import comfy.diffusers_convert
import execution
import torch
from comfy_api.latest import Types, io
from comfy_extras.chainner_models import model_loading
from comfy_extras.nodes_custom_sampler import Guider_Basic, Noise_EmptyNoise, Noise_RandomNoise
from latent_preview import TAESD, TAESDPreviewerImpl

# Impact-Pack wraps the executor's error handler at import time.
original_handle_execution_error = execution.PromptExecutor.handle_execution_error


def handle_execution_error(self, *args, **kwargs):
    return original_handle_execution_error(self, *args, **kwargs)


execution.PromptExecutor.handle_execution_error = handle_execution_error


class NewerNoise:
    """Noise as Impact-Pack draws it: Noise_RandomNoise(seed).generate_noise(latent)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0}), "empty": ("BOOLEAN", {"default": False})}}

    RETURN_TYPES = ("LATENT", "STRING")
    FUNCTION = "draw"
    CATEGORY = "test/newer"

    def draw(self, seed, empty):
        latent = {"samples": torch.zeros(1, 4, 2, 2)}
        noise = (Noise_EmptyNoise() if empty else Noise_RandomNoise(seed)).generate_noise(latent)
        guider = Guider_Basic.__name__
        return ({"samples": noise}, f"{guider}|{tuple(noise.shape)}")


class NewerTaesdPreview:
    """A TAESD decoder built the way Impact-Pack builds previewers (random weights: shape only)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 2})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "preview"
    CATEGORY = "test/newer"

    def preview(self, size):
        taesd = TAESD(None, None, latent_channels=4)
        decoded = taesd.decode(torch.zeros(1, 4, size, size))
        picture = TAESDPreviewerImpl(taesd).decode_latent_to_preview(torch.zeros(1, 4, size, size))
        loader = model_loading.load_state_dict.__name__
        vae = comfy.diffusers_convert.convert_vae_state_dict(
            {
                "decoder.up_blocks.0.resnets.0.conv1.weight": torch.zeros(1),
                "decoder.up_blocks.3.x": torch.zeros(1),
            }
        )
        return (f"{tuple(decoded.shape)}|{picture.size}|{loader}|{sorted(vae)[0]}",)


class SharpenLike(io.ComfyNode):
    """KJNodes-style DynamicCombo: each method brings its own inputs."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NewerDynamicCombo",
            category="test/newer",
            inputs=[
                io.DynamicCombo.Input("method", options=[
                    io.DynamicCombo.Option(key="scale", inputs=[
                        io.Float.Input("factor", default=2.0, min=0, max=4),
                    ]),
                    io.DynamicCombo.Option(key="shift", inputs=[
                        io.Float.Input("factor", default=1.0, min=-8, max=8),
                        io.Int.Input("times", default=1, min=1, max=5),
                    ]),
                ]),
                io.Float.Input("value", default=1.0),
            ],
            outputs=[io.String.Output()],
        )  # fmt: skip

    @classmethod
    def execute(cls, method, value):
        if method["method"] == "scale":
            return io.NodeOutput(f"{sorted(method)}={value * method['factor']}")
        return io.NodeOutput(f"{sorted(method)}={value + method['factor'] * method['times']}")


class CalculatorLike(io.ComfyNode):
    """KJNodes-style Autogrow with named template inputs, plus the newer socket types."""

    @classmethod
    def define_schema(cls):
        template = io.Autogrow.TemplateNames(
            input=io.MultiType.Input("var", [io.Int, io.Float], optional=True), names=["a", "b", "c"], min=2
        )
        return io.Schema(
            node_id="NewerAutogrow",
            category="test/newer",
            inputs=[
                io.Autogrow.Input("variables", template=template),
                io.Tracks.Input("tracks", optional=True),
                io.BoundingBox.Input("box", optional=True, force_input=True),
                io.Combo.Input("format", options=Types.VideoContainer.as_input(), default="auto"),
            ],
            outputs=[io.Float.Output(), io.Tracks.Output()],
        )

    @classmethod
    def execute(cls, variables, format, tracks=None, box=None):
        total = float(sum(v for v in variables.values() if v is not None))
        return io.NodeOutput(total, {"names": sorted(variables), "format": format})


# V3 classes listed in NODE_CLASS_MAPPINGS beside classic ones, as KJNodes does.
NODE_CLASS_MAPPINGS = {
    "NewerNoise": NewerNoise,
    "NewerTaesdPreview": NewerTaesdPreview,
    "NewerDynamicCombo": SharpenLike,
    "NewerAutogrow": CalculatorLike,
}
