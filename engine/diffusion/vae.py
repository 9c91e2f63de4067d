"""VAE: what travels on VAE links — an autoencoder answering ComfyUI's `comfy.sd.VAE` calls.

`encode` takes an IMAGE [B, H, W, C] in 0..1 (cropped to the VAE's multiple, centred) and returns raw
latents [B, C, h, w], the posterior's mean; `decode` takes raw latents and returns an IMAGE. The tiled
variants average three tilings of different aspect, as ComfyUI does, so seams fall in different places
and wash out. The model is a diffusers `AutoencoderKL` (ComfyUI's is its own `AutoencodingEngine`):
`first_stage_model.encode/decode` return diffusers outputs, not bare tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.diffusion.devices import manager
from engine.diffusion.latent_formats import LatentFormat, latent_format

if TYPE_CHECKING:
    import torch

NO_VAE = (
    "ERROR: VAE is invalid: None\n\n"
    "If the VAE is from a checkpoint loader node your checkpoint does not contain a valid VAE."
)


class VAE:
    """VAE: the autoencoder and its latent conventions.

    `VAE(sd=state_dict)` builds one from original-layout weights, as ComfyUI's constructor does; Loom's
    loaders wrap a loaded model with `VAE.wrap(model, latent_format)`.
    """

    vae: Any
    latent: LatentFormat

    def __init__(
        self,
        sd: dict[str, Any] | None = None,
        device: Any = None,
        config: Any = None,
        dtype: Any = None,
        metadata: Any = None,
    ) -> None:
        if sd is None or config is not None:
            raise ValueError("VAE: Loom builds a VAE from its weights only: VAE(sd=state_dict)")
        built = vae_from_state_dict(sd, metadata or {}, "VAE")
        self.vae, self.latent = built.vae, built.latent
        if dtype is not None:
            self.vae.to(dtype)

    @classmethod
    def wrap(cls, vae: Any, latent: LatentFormat) -> VAE:
        made = cls.__new__(cls)
        made.vae, made.latent = vae, latent
        return made

    # ComfyUI's attributes ---------------------------------------------------------------------------

    @property
    def first_stage_model(self) -> Any:
        return self.vae

    @property
    def downscale_ratio(self) -> int:
        own = getattr(self.vae, "downscale_ratio", None)  # Flux.2's: its latent is patchified 2×2 too
        if isinstance(own, int):
            return own
        return int(2 ** (len(self.vae.config.block_out_channels) - 1))

    @property
    def upscale_ratio(self) -> int:
        return self.downscale_ratio

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    latent_dim = 2

    @property
    def output_channels(self) -> int:
        """Image channels: 3, or 4 (RGBA) for Qwen-Image Layered's VAE."""
        return int(getattr(self.vae, "image_channels", 3))

    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return manager().device

    @property
    def output_device(self) -> torch.device:
        import torch

        return torch.device("cpu")

    @property
    def patcher(self) -> Any:
        from engine.diffusion.module_holder import ModuleHolder

        return ModuleHolder(self.vae)

    def spacial_compression_decode(self) -> int:
        return self.upscale_ratio

    def spacial_compression_encode(self) -> int:
        return self.downscale_ratio

    def temporal_compression_decode(self) -> None:
        return None

    def process_input(self, image: torch.Tensor) -> torch.Tensor:
        return image * 2.0 - 1.0

    def process_output(self, image: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.clamp((image + 1.0) / 2.0, min=0.0, max=1.0)

    def memory_used_encode(self, shape: tuple[int, ...], dtype: torch.dtype) -> int:
        return 1767 * shape[2] * shape[3] * dtype.itemsize

    def memory_used_decode(self, shape: tuple[int, ...], dtype: torch.dtype) -> int:
        return 2178 * shape[2] * shape[3] * 64 * dtype.itemsize

    def throw_exception_if_invalid(self) -> None:
        if self.vae is None:
            raise RuntimeError(NO_VAE)

    def get_sd(self) -> dict[str, torch.Tensor]:
        """The weights in the original (LDM) layout: `encoder.down.0.block.0.…`, as ComfyUI names them."""
        from engine.models.keymap import vae_to_original

        return vae_to_original(self.vae.state_dict(), self.vae.config)

    # Encoding and decoding ---------------------------------------------------------------------------

    def vae_encode_crop_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        ratio = self.downscale_ratio
        for dim in (1, 2):
            size = (pixels.shape[dim] // ratio) * ratio
            if size != pixels.shape[dim]:
                pixels = pixels.narrow(dim, (pixels.shape[dim] % ratio) // 2, size)
        return pixels

    def _decode_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        import torch

        device, dtype = manager().use(self.vae), self.vae_dtype
        # On the CPU, channels-last activations make oneDNN's convolutions about 7 % faster for the whole
        # decoder (SD1.5-layout VAE at 256², one thread; weights stay as they are). The image then comes
        # out already laid out as IMAGE's [B, H, W, C].
        layout = torch.channels_last if device.type == "cpu" else torch.preserve_format

        def decode(z: torch.Tensor) -> torch.Tensor:
            z = z.to(device, dtype)
            if z.ndim == 4:
                z = z.contiguous(memory_format=layout)
            return self.vae.decode(z).sample.float()

        return decode

    def _encode_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        device, dtype = manager().use(self.vae), self.vae_dtype
        channels = self.output_channels

        def encode(x: torch.Tensor) -> torch.Tensor:
            x = _with_channels(x, channels)
            return self.vae.encode(self.process_input(x).to(device, dtype)).latent_dist.mode().float()

        return encode

    def decode(self, samples: torch.Tensor, vae_options: dict | None = None) -> torch.Tensor:
        """Raw latents [B, C, h, w] → IMAGE [B, H, W, 3] in 0..1 (RGBA: [B, H, W, 4]); latents with frames
        [B, C, T, h, w] (a frame VAE's) → B·T images."""
        self.throw_exception_if_invalid()
        import torch

        from engine import threads

        decode = self._decode_fn()
        # Most of the decoder runs at pixel resolution: count the work there.
        positions = samples.numel() // samples.shape[1] * self.upscale_ratio**2
        with torch.no_grad(), threads.limited(threads.work_of(self.vae, positions)):
            pixels = _in_chunks(lambda z: self.process_output(decode(z).to(self.output_device)), samples)
        return pixels.movedim(1, -1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """IMAGE [B, H, W, C] → raw latents [B, C, h, w] (the posterior's mean)."""
        self.throw_exception_if_invalid()
        pixels = self.vae_encode_crop_pixels(pixels).movedim(-1, 1)
        import torch

        from engine import threads

        encode = self._encode_fn()
        positions = pixels.shape[0] * pixels.shape[-2] * pixels.shape[-1]
        with torch.no_grad(), threads.limited(threads.work_of(self.vae, positions)):
            latents = _in_chunks(lambda x: encode(x).to(self.output_device), pixels)
        # An IMAGE is [B, H, W, C] in memory, so the encoder runs channels-last and its latents come out
        # so; LATENT consumers (and ComfyUI's, which fills a fresh tensor) expect a plain contiguous one.
        return latents.contiguous()

    def decode_tiled(
        self,
        samples: torch.Tensor,
        tile_x: int | None = None,
        tile_y: int | None = None,
        overlap: int | None = None,
        tile_t: int | None = None,
        overlap_t: int | None = None,
    ) -> torch.Tensor:
        """Decode latents in overlapping tiles of `tile_x`×`tile_y` latents (default 64×64, overlap 16)."""
        from engine.diffusion.tiling import tiled_scale

        self.throw_exception_if_invalid()
        tile_x, tile_y, overlap = tile_x or 64, tile_y or 64, 16 if overlap is None else overlap
        shapes = [(tile_x // 2, tile_y * 2), (tile_x * 2, tile_y // 2), (tile_x, tile_y)]
        decode = self._decode_fn()
        pbar = _progress(samples, shapes, overlap)
        first, second, third = (
            tiled_scale(samples, decode, tx, ty, overlap, self.upscale_ratio, self.output_channels, pbar=pbar)
            for tx, ty in shapes
        )
        return self.process_output((first + second + third) / 3.0).movedim(1, -1)

    def encode_tiled(
        self,
        pixels: torch.Tensor,
        tile_x: int | None = None,
        tile_y: int | None = None,
        overlap: int | None = None,
        tile_t: int | None = None,
        overlap_t: int | None = None,
    ) -> torch.Tensor:
        """Encode an IMAGE in overlapping tiles of `tile_x`×`tile_y` pixels (default 512×512, overlap 64)."""
        from engine.diffusion.tiling import tiled_scale

        self.throw_exception_if_invalid()
        pixels = self.vae_encode_crop_pixels(pixels).movedim(-1, 1)
        tile_x, tile_y, overlap = tile_x or 512, tile_y or 512, 64 if overlap is None else overlap
        shapes = [(tile_x, tile_y), (tile_x * 2, tile_y // 2), (tile_x // 2, tile_y * 2)]
        encode = self._encode_fn()
        pbar = _progress(pixels, shapes, overlap)
        scale = 1 / self.downscale_ratio
        first, second, third = (
            tiled_scale(pixels, encode, tx, ty, overlap, scale, self.latent_channels, pbar=pbar)
            for tx, ty in shapes
        )
        return (first + second + third) / 3.0


# Batch items per VAE call: an interrupt takes effect between chunks, and the activations of a
# 4,096-latent batch are never all in memory at once. The VAE treats batch items independently.
VAE_CHUNK = 4


def _in_chunks(function: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
    import torch

    from engine.context import check_interrupt

    parts = []
    for start in range(0, batch.shape[0], VAE_CHUNK):
        check_interrupt()
        parts.append(function(batch[start : start + VAE_CHUNK]))
    return torch.cat(parts)


def _with_channels(pixels: torch.Tensor, channels: int) -> torch.Tensor:
    """Pixels [B, C, H, W] in 0..1 with the VAE's image channels: an RGB image gets an opaque alpha for an
    RGBA VAE (diffusers' layered pipeline converts its input to RGBA the same way)."""
    import torch

    if pixels.shape[1] >= channels:
        return pixels[:, :channels]
    fill = torch.ones_like(pixels[:, :1]).expand(-1, channels - pixels.shape[1], -1, -1)
    return torch.cat([pixels, fill], dim=1)


def vae_from_state_dict(state: dict[str, Any], metadata: dict[str, str], name: str) -> VAE:
    """A VAE from original-layout weights (keys `encoder.*`, `decoder.*`, optionally prefixed)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from engine.models import flux2_vae, qwen_vae, qwen_vae21
    from engine.models.detect import VAE_PREFIX, vae_config_from_shapes
    from engine.models.errors import UnsupportedModelError

    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if qwen_vae.is_wan_vae(shapes):
        return _frame_vae(state, name)
    bare = {k.removeprefix(VAE_PREFIX): v for k, v in state.items()}
    if flux2_vae.is_flux2_vae({k: tuple(v.shape) for k, v in bare.items()}):
        loaded = flux2_vae.load(bare, manager().dtype("vae"), name)
        return VAE.wrap(loaded, latent_format("flux2", 1.0, {}))
    if qwen_vae21.is_qwen21_vae(shapes):
        return _rgba_frame_vae(state, name)
    state = {VAE_PREFIX + k.removeprefix(VAE_PREFIX): v for k, v in state.items()}
    if f"{VAE_PREFIX}decoder.conv_in.weight" not in state:
        found = ", ".join(sorted(state)[:3])
        raise UnsupportedModelError(f"{name}: not a VAE in the original layout (found keys like {found})")
    config = vae_config_from_shapes({k: tuple(v.shape) for k, v in state.items()}, "sd1", {})
    # 16 latent channels: the flow families' VAE (SD3/SD3.5 and Flux share its architecture).
    family = "sd3" if config["latent_channels"] == 16 else "sd1"
    if family == "sd3":
        fmt = latent_format("sd3", 1.0, {})
        config.update(scaling_factor=fmt.scale_factor, shift_factor=fmt.shift_factor, sample_size=1024)
    vae: Any = AutoencoderKL(**config)
    missing, _ = vae.load_state_dict(convert_ldm_vae_checkpoint(state, config), strict=False)
    if missing:
        raise UnsupportedModelError(f"{name}: VAE weights missing, e.g. {missing[:3]}")
    vae.eval().requires_grad_(False).to(manager().dtype("vae"))
    return VAE.wrap(vae, latent_format(family, config["scaling_factor"], metadata))


def _frame_vae(state: dict[str, Any], name: str) -> VAE:
    """Qwen-Image's Wan-layout VAE, one frame per image, with its per-channel latent format."""
    from engine.diffusion.frame_vae import FrameVAE
    from engine.models import qwen_vae

    video = qwen_vae.load(state, manager().dtype("vae"), name)
    return VAE.wrap(FrameVAE(video).eval(), latent_format("qwen_image", 1.0, {}))


def _rgba_frame_vae(state: dict[str, Any], name: str) -> VAE:
    """Qwen-Image 2.1's RGBA VAE with its 64-channel latent format."""
    from engine.diffusion.frame_vae import FrameVAE
    from engine.models import qwen_vae21

    video = qwen_vae21.load(state, manager().dtype("vae"), name)
    return VAE.wrap(FrameVAE(video).eval(), latent_format("qwen_image21", 1.0, {}))


class _TileProgress:
    """Progress of the running node over all tiles (ComfyUI reports tiled VAE work the same way)."""

    def __init__(self, total: int) -> None:
        from engine.context import current_context

        self.ctx, self.total, self.done = current_context.get(), total, 0

    def update(self, steps: int) -> None:
        self.done = min(self.done + steps, self.total)
        if self.ctx is not None:
            self.ctx.progress(self.done, self.total)


def _progress(samples: torch.Tensor, shapes: list[tuple[int, int]], overlap: int) -> _TileProgress:
    from engine.diffusion.tiling import tiled_scale_steps

    height, width = samples.shape[2], samples.shape[3]
    steps = sum(tiled_scale_steps(width, height, tx, ty, overlap) for tx, ty in shapes)
    return _TileProgress(samples.shape[0] * steps)
