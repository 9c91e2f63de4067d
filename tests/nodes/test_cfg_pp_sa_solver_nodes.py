"""The CFG++ and SA-Solver samplers through KSampler and SamplerCustom on the tiny SD1 checkpoint, checked
against the samplers they reduce to."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from engine.executor import Executor
from engine.folders import Folders
from engine.native import Node, Socket
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_model_patch_nodes import CKPT, close, differs, latent


def custom(sampler: dict[str, Any], seed: int = 1, negative: str = "") -> dict[str, Any]:
    """text_to_image with KSampler replaced by SamplerCustom running `sampler` (node 70)."""
    prompt = text_to_image(CKPT, seed=seed)
    prompt["7"]["inputs"]["text"] = negative
    prompt["70"] = sampler
    prompt["71"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 3, "denoise": 1.0},
    }
    prompt["3"] = {
        "class_type": "SamplerCustom",
        "inputs": {
            "model": ["4", 0],
            "add_noise": True,
            "noise_seed": seed,
            "cfg": 7.0,
            "positive": ["6", 0],
            "negative": ["7", 0],
            "sampler": ["70", 0],
            "sigmas": ["71", 0],
            "latent_image": ["5", 0],
        },
    }
    return prompt


def select(name: str) -> dict[str, Any]:
    return {"class_type": "KSamplerSelect", "inputs": {"sampler_name": name}}


def sa_solver(**inputs: Any) -> dict[str, Any]:
    defaults = {"eta": 1.0, "sde_start_percent": 0.2, "sde_end_percent": 0.8, "s_noise": 1.0}
    defaults |= {"predictor_order": 3, "corrector_order": 4, "use_pece": False, "simple_order_2": False}
    return {"class_type": "SamplerSASolver", "inputs": {"model": ["4", 0], **defaults, **inputs}}


def test_euler_cfg_pp_is_euler_when_uncond_equals_cond(executor: Executor, sd_folders: Folders) -> None:
    # With the same prompt on both sides the uncond prediction is the guided one, and the CFG++ step
    # denoised + sigma_next * (x - uncond) / sigma is the Euler step.
    same = {"text": "a red circle", "clip": ["4", 1]}
    euler, cfg_pp = text_to_image(CKPT), text_to_image(CKPT, sampler="euler_cfg_pp")
    for prompt in (euler, cfg_pp):
        prompt["7"]["inputs"] = dict(same)
    assert close(latent(executor, sd_folders, cfg_pp), latent(executor, sd_folders, euler))
    # With a different negative prompt the step differs from Euler's.
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    assert differs(latent(executor, sd_folders, text_to_image(CKPT, sampler="euler_cfg_pp")), plain)


def test_euler_ancestral_cfg_pp_node(executor: Executor, sd_folders: Folders) -> None:
    regular = latent(
        executor, sd_folders, custom({"class_type": "SamplerEulerCFGpp", "inputs": {"version": "regular"}})
    )
    no_noise = {"class_type": "SamplerEulerAncestralCFGPP", "inputs": {"eta": 0.0, "s_noise": 1.0}}
    assert close(latent(executor, sd_folders, custom(no_noise)), regular)
    ancestral = {"class_type": "SamplerEulerAncestralCFGPP", "inputs": {"eta": 1.0, "s_noise": 1.0}}
    noisy = latent(executor, sd_folders, custom(ancestral))
    assert np.isfinite(noisy).all() and differs(noisy, regular)
    # KSampler's euler_ancestral_cfg_pp is the node's sampler with its defaults.
    assert close(latent(executor, sd_folders, custom(select("euler_ancestral_cfg_pp"))), noisy)


def test_euler_cfg_pp_alternative_version(executor: Executor, sd_folders: Folders) -> None:
    regular = latent(
        executor, sd_folders, custom({"class_type": "SamplerEulerCFGpp", "inputs": {"version": "regular"}})
    )
    alternative = {"class_type": "SamplerEulerCFGpp", "inputs": {"version": "alternative"}}
    got = latent(executor, sd_folders, custom(alternative))
    assert np.isfinite(got).all() and differs(got, regular)


def test_sa_solver_first_order_ode_is_euler(executor: Executor, sd_folders: Folders) -> None:
    # tau 0, one past prediction, no corrector: x' = (s'/s) x + (1 - s'/s) denoised, Euler's step.
    euler = latent(executor, sd_folders, custom(select("euler")))
    first_order = sa_solver(eta=0.0, predictor_order=1, corrector_order=0)
    assert close(latent(executor, sd_folders, custom(first_order)), euler)


def test_sa_solver_orders_and_noise(executor: Executor, sd_folders: Folders) -> None:
    euler = latent(executor, sd_folders, custom(select("euler")))
    ode = latent(executor, sd_folders, custom(sa_solver(eta=0.0)))
    sde = latent(executor, sd_folders, custom(sa_solver()))
    pece = latent(
        executor, sd_folders, custom(sa_solver(use_pece=True, simple_order_2=True, predictor_order=2))
    )
    for got in (ode, sde, pece):
        assert np.isfinite(got).all() and differs(got, euler)
    assert differs(ode, sde) and differs(sde, pece)
    # KSampler's sa_solver is the node with its defaults.
    assert close(latent(executor, sd_folders, custom(select("sa_solver"))), sde)


UNCONDS_SEEN: list[Any] = []


def pack_style_euler(
    model: Any, x: Any, sigmas: Any, extra_args: Any = None, callback: Any = None, disable: Any = None
) -> Any:
    """A pack's KSAMPLER function that hooks the guidance as ComfyUI's CFG++ samplers do."""
    from engine.diffusion.model_options import set_model_options_post_cfg_function

    def record(args: dict[str, Any]) -> Any:
        UNCONDS_SEEN.append(args["uncond_denoised"])
        return args["denoised"]

    extra_args = dict(extra_args)
    options = extra_args.get("model_options", {}).copy()
    extra_args["model_options"] = set_model_options_post_cfg_function(options, record, True)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * x.new_ones([x.shape[0]]), **extra_args)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


class PackStyleSampler(Node):
    """A SAMPLER made the way packs make theirs (comfy.samplers.KSAMPLER)."""

    category = "testing"

    def run(self) -> Annotated[Any, Socket("SAMPLER")]:
        from engine.diffusion.function_sampler import FunctionSampler

        return FunctionSampler(pack_style_euler)


def test_pack_samplers_get_model_options_in_extra_args(executor: Executor, sd_folders: Folders) -> None:
    if "PackStyleSampler" not in executor.registry:
        executor.registry.register(PackStyleSampler)
    UNCONDS_SEEN.clear()
    got = latent(
        executor, sd_folders, custom({"class_type": "PackStyleSampler", "inputs": {}}, negative="blue")
    )
    assert len(UNCONDS_SEEN) == 3  # the post-cfg function ran at each of the 3 steps
    euler = latent(executor, sd_folders, custom(select("euler"), negative="blue"))
    assert close(got, euler)
