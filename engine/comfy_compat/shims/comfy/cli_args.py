"""ComfyUI's comfy.cli_args: `args`, the command-line settings packs read, and LatentPreviewMethod.

Every name ComfyUI 0.3.64 defines is present with its default; where Loom has the setting, the value is
Loom's: the input/output/temp folders, `--cpu`, `--listen`/`--port` (read from Loom's command line),
and `preview_method` (Loom sends latent-to-RGB previews while sampling).
"""

from __future__ import annotations

import argparse
import enum
import sys
from typing import Any


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


class PerformanceFeature(enum.Enum):
    Fp16Accumulation = "fp16_accumulation"
    Fp8MatrixMultiplication = "fp8_matrix_mult"
    CublasOps = "cublas_ops"
    AutoTune = "autotune"


_FALSE_FLAGS = (
    "auto_launch",
    "disable_auto_launch",
    "cuda_malloc",
    "disable_cuda_malloc",
    "force_fp32",
    "force_fp16",
    "fp32_unet",
    "fp64_unet",
    "bf16_unet",
    "fp16_unet",
    "fp8_e4m3fn_unet",
    "fp8_e5m2_unet",
    "fp8_e8m0fnu_unet",
    "fp16_vae",
    "fp32_vae",
    "bf16_vae",
    "cpu_vae",
    "fp8_e4m3fn_text_enc",
    "fp8_e5m2_text_enc",
    "fp16_text_enc",
    "fp32_text_enc",
    "bf16_text_enc",
    "force_channels_last",
    "disable_ipex_optimize",
    "supports_fp8_compute",
    "cache_classic",
    "cache_none",
    "use_split_cross_attention",
    "use_quad_cross_attention",
    "use_sage_attention",
    "use_flash_attention",
    "disable_xformers",
    "force_upcast_attention",
    "dont_upcast_attention",
    "gpu_only",
    "highvram",
    "normalvram",
    "lowvram",
    "novram",
    "async_offload",
    "force_non_blocking",
    "disable_smart_memory",
    "deterministic",
    "mmap_torch_files",
    "disable_mmap",
    "dont_print_server",
    "quick_test_for_ci",
    "windows_standalone_build",
    "disable_metadata",
    "disable_all_custom_nodes",
    "disable_api_nodes",
    "multi_user",
    "log_stdout",
    "enable_compress_response_body",
)

_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(_FALSE_FLAGS, False),
    "listen": "127.0.0.1",
    "port": 8188,
    "tls_keyfile": None,
    "tls_certfile": None,
    "enable_cors_header": None,
    "max_upload_size": 100,
    "base_directory": None,
    "extra_model_paths_config": None,
    "cuda_device": None,
    "default_device": None,
    "directml": None,
    "oneapi_device_selector": None,
    "preview_size": 512,
    "cache_lru": 0,
    "reserve_vram": None,
    "default_hashing_function": "sha256",
    "fast": None,
    "whitelist_custom_nodes": [],
    "verbose": "INFO",
    "front_end_version": "comfyanonymous/ComfyUI@latest",
    "front_end_root": None,
    "user_directory": None,
    "comfy_api_base": "https://api.comfy.org",
    "database_url": None,
    # Loom's attention is torch's scaled_dot_product_attention (through diffusers).
    "use_pytorch_cross_attention": True,
    "preview_method": LatentPreviewMethod.Latent2RGB,
}


def _command_line() -> dict[str, Any]:
    """--listen, --port and --cpu as given to Loom's main (unknown flags are someone else's)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--listen", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--cpu", action="store_true")
    try:
        known, _ = parser.parse_known_args(sys.argv[1:])
    except argparse.ArgumentError:
        return {}  # not Loom's command line (a test runner's, say): ComfyUI's defaults stand
    return {k: v for k, v in vars(known).items() if v not in (None, False)}


class _Args(argparse.Namespace):
    """ComfyUI's defaults, with Loom's live folders and device behind the names that have them."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("output_directory", "input_directory", "temp_directory"):
            from engine import folders

            return str(getattr(folders.current(), name.removesuffix("_directory")))
        if name == "cpu":
            from engine.diffusion.devices import manager

            return manager().force_cpu or bool(super().__getattribute__("cpu"))
        return super().__getattribute__(name)


args = _Args(**{**_DEFAULTS, "cpu": False, **_command_line()})
