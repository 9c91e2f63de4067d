"""A test pack that patches MODEL the way real packs do (KJNodes, ComfyUI_essentials, rgthree,
Impact): ComfyUI imports at module level, ModelPatcher clones with cfg functions, block patches and
attention replacements, a k-diffusion-style sampler wrapped in KSAMPLER, and comfy.sample.sample."""

import comfy.model_management
import comfy.sample
import comfy.samplers
import torch
from comfy.k_diffusion.sampling import to_d
from comfy.ldm.modules.attention import optimized_attention
from comfy.model_patcher import ModelPatcher


class PatchRescaleCFG:
    """RescaleCFG-style: rescale the guided prediction's spread to the conditional one's."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "multiplier": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0}),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "test/patches"

    def patch(self, model: ModelPatcher, multiplier):
        def rescale(args):
            cond, uncond, scale = args["cond_denoised"], args["uncond_denoised"], args["cond_scale"]
            guided = uncond + scale * (cond - uncond)
            spread = torch.std(cond, dim=(1, 2, 3), keepdim=True) / torch.std(
                guided, dim=(1, 2, 3), keepdim=True
            )
            mixed = multiplier * guided * spread + (1.0 - multiplier) * guided
            return args["input"] - mixed  # a cfg function answers in noise space: x - denoised

        m = model.clone()
        m.set_model_sampler_cfg_function(rescale)
        return (m,)


class PatchFreeULike:
    """FreeU-style: scale the backbone features and the skip features of every output block."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "b": ("FLOAT", {"default": 1.1}),
                "s": ("FLOAT", {"default": 0.9}),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "test/patches"

    def patch(self, model, b, s):
        def output_block_patch(h, hsp, transformer_options):
            assert transformer_options["block"][0] == "output"
            return h * b, hsp * s

        m = model.clone()
        m.set_model_output_block_patch(output_block_patch)
        return (m,)


class PatchAttentionReplace:
    """Replace cross-attention at one ComfyUI block id with attention computed by the pack."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "block": (["input", "middle", "output"],),
                "number": ("INT", {"default": 1}),
                "context_scale": ("FLOAT", {"default": 1.0}),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "test/patches"

    def patch(self, model, block, number, context_scale):
        def attn2(q, k, v, extra_options):
            return optimized_attention(q, k * context_scale, v * context_scale, extra_options["n_heads"])

        m = model.clone()
        m.set_model_attn2_replace(attn2, block, number)
        return (m,)


@torch.no_grad()
def sample_pack_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Euler written as packs write samplers."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


class PackEulerSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get"
    CATEGORY = "test/sampling"

    def get(self):
        return (comfy.samplers.KSAMPLER(sample_pack_euler),)


class PackSigmas:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
                "steps": ("INT", {"default": 3}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get"
    CATEGORY = "test/sampling"

    def get(self, model, scheduler, steps):
        return (
            comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu(),
        )


class PackKSampler:
    """An Impact/efficiency-style KSampler: comfy.sample.prepare_noise + comfy.sample.sample."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "seed": ("INT", {"default": 0}),
                "steps": ("INT", {"default": 3}),
                "cfg": ("FLOAT", {"default": 7.0}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "test/sampling"

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image):
        latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
        noise = comfy.sample.prepare_noise(latent, seed, latent_image.get("batch_index"))
        samples = comfy.sample.sample(
            model,
            noise,
            steps,
            cfg,
            sampler_name,
            scheduler,
            positive,
            negative,
            latent,
            noise_mask=latent_image.get("noise_mask"),
            seed=seed,
        )
        assert samples.device == comfy.model_management.intermediate_device()
        return ({**latent_image, "samples": samples},)


class ModelFacts:
    """Reads what packs read off a MODEL."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "facts"
    OUTPUT_NODE = True
    CATEGORY = "test/patches"

    def facts(self, model):
        sampling = model.get_model_object("model_sampling")
        text = (
            f"{type(model.model).__name__} {model.model.model_type.name} "
            f"{float(sampling.sigma_max):.3f} {model.model.latent_format.latent_channels} "
            f"{model.model_dtype()} {isinstance(model, ModelPatcher)}"
        )
        return {"ui": {"text": [text]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {
    "PatchRescaleCFG": PatchRescaleCFG,
    "PatchFreeULike": PatchFreeULike,
    "PatchAttentionReplace": PatchAttentionReplace,
    "PackEulerSampler": PackEulerSampler,
    "PackSigmas": PackSigmas,
    "PackKSampler": PackKSampler,
    "ModelFacts": ModelFacts,
}
