"""A test pack using ComfyUI's wrapper system the way KJNodes does (LatentInpaintTTM, its compile
wrapper): an OUTER_SAMPLE wrapper on the ModelPatcher that, while the run is set up, adds an
APPLY_MODEL wrapper to the guider's model_options; SAMPLER_SAMPLE, PREDICT_NOISE and
CALC_COND_BATCH wrappers; ON_PRE_RUN / ON_CLEANUP callbacks. Each records its calls in CALLS;
`blend` > 0 makes the APPLY_MODEL wrapper pull the prediction towards the input."""

from comfy.patcher_extension import CallbacksMP, WrappersMP

CALLS: dict[str, list] = {
    "outer_sample": [],
    "sampler_sample": [],
    "predict_noise": [],
    "calc_cond_batch": [],
    "apply_model": [],
    "pre_run": [],
    "cleanup": [],
}


class OuterSample:
    def __init__(self, blend):
        self.blend = blend

    def __call__(
        self, executor, noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed
    ):
        guider = executor.class_obj
        CALLS["outer_sample"].append((tuple(noise.shape), len(sigmas), seed))
        wrappers = guider.model_options["transformer_options"]["wrappers"]
        wrappers.setdefault(WrappersMP.APPLY_MODEL, {})["test_apply"] = [ApplyModel(self.blend)]
        return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)


class ApplyModel:
    def __init__(self, blend):
        self.blend = blend

    def __call__(self, executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        CALLS["apply_model"].append((float(t.flatten()[0]), "sample_sigmas" in transformer_options))
        denoised = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        return denoised * (1.0 - self.blend) + x * self.blend


def sampler_sample(
    executor, model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar
):
    CALLS["sampler_sample"].append((len(sigmas), extra_args["seed"], callable(model_wrap)))
    return executor(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)


def calc_cond_batch(executor, model, conds, x_in, timestep, model_options):
    CALLS["calc_cond_batch"].append(len(conds))
    return executor(model, conds, x_in, timestep, model_options)


def predict_noise(executor, x, timestep, model_options, seed):
    CALLS["predict_noise"].append(float(timestep.flatten()[0]))
    return executor(x, timestep, model_options, seed)


class PatchWrappers:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"model": ("MODEL",), "blend": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0})}
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "test/patches"

    def patch(self, model, blend):
        m = model.clone()
        m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, "test_outer", OuterSample(blend))
        m.add_wrapper_with_key(WrappersMP.PREDICT_NOISE, "test_predict", predict_noise)
        m.add_wrapper_with_key(WrappersMP.SAMPLER_SAMPLE, "test_sampler", sampler_sample)
        m.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, "test_cond_batch", calc_cond_batch)
        # KJNodes toggles torch settings around sampling this way.
        m.add_callback(
            CallbacksMP.ON_PRE_RUN, lambda patcher: CALLS["pre_run"].append(len(CALLS["predict_noise"]))
        )
        m.add_callback(
            CallbacksMP.ON_CLEANUP, lambda patcher: CALLS["cleanup"].append(len(CALLS["predict_noise"]))
        )
        return (m,)


NODE_CLASS_MAPPINGS = {"PatchWrappers": PatchWrappers}
