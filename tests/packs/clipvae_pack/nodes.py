import comfy.model_management
import comfy.sd
import comfy.utils
import folder_paths
import torch
from comfy.sd1_clip import token_weights


class PackEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "text": ("STRING", {"multiline": True})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "clipvae_pack"

    def encode(self, clip, text):
        tokens = clip.tokenize(text)
        cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        return ([[cond, {"pooled_output": pooled}]],)


class PackClipSkip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "layer": ("INT", {"default": -2, "min": -24, "max": -1})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "skip"
    CATEGORY = "clipvae_pack"

    def skip(self, clip, layer):
        clip = clip.clone()
        clip.clip_layer(layer)
        return (clip,)


class PackCheckpoint:
    """Loads a checkpoint itself, as loader packs do with comfy.sd.load_checkpoint_guess_config."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "clipvae_pack"

    def load(self, ckpt_name):
        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            path,
            output_vae=True,
            output_clip=True,
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
        )
        return (model, clip, vae)


class PackDecodeTiled:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",), "samples": ("LATENT",), "tile": ("INT", {"default": 16})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = "clipvae_pack"

    def decode(self, vae, samples, tile):
        comfy.model_management.load_models_gpu([vae.patcher])
        return (vae.decode_tiled(samples["samples"], tile_x=tile, tile_y=tile, overlap=tile // 4),)


class PackEncodeDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",), "image": ("IMAGE",)}}

    RETURN_TYPES = ("LATENT", "IMAGE")
    FUNCTION = "roundtrip"
    CATEGORY = "clipvae_pack"

    def roundtrip(self, vae, image):
        latent = vae.encode(image[:, :, :, :3])
        return ({"samples": latent}, vae.decode(latent))


class PackTiledUpscale:
    """Doubles an image with nearest-neighbour, tile by tile through comfy.utils.tiled_scale."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "tile": ("INT", {"default": 8})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "clipvae_pack"

    def upscale(self, image, tile):
        def double(x):
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

        samples = image.movedim(-1, 1)
        pbar = comfy.utils.ProgressBar(
            image.shape[0]
            * comfy.utils.get_tiled_scale_steps(samples.shape[3], samples.shape[2], tile, tile, 2)
        )
        out = comfy.utils.tiled_scale(
            samples, double, tile, tile, 2, upscale_amount=2, out_channels=3, pbar=pbar
        )
        return (out.movedim(1, -1),)


class PackCompare:
    """An output node reporting how two tensors (conditioning, latents or images) differ."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("*",), "b": ("*",)}}

    RETURN_TYPES = ()
    FUNCTION = "compare"
    OUTPUT_NODE = True
    CATEGORY = "clipvae_pack"

    def compare(self, a, b):
        a_t, b_t = _tensor(a), _tensor(b)
        same_shape = tuple(a_t.shape) == tuple(b_t.shape)
        diff = float((a_t - b_t).abs().max()) if same_shape else float("inf")
        return {
            "ui": {
                "equal": [same_shape and torch.equal(a_t, b_t)],
                "max_diff": [diff],
                "shape": [list(a_t.shape)],
                "weights": [len(token_weights("(a:1.2) b", 1.0))],
            }
        }


def _tensor(value):
    if isinstance(value, list):  # CONDITIONING: [[cond, {"pooled_output": ...}]]
        cond, options = value[0]
        return torch.cat([cond.flatten(), options["pooled_output"].flatten()])
    if isinstance(value, dict):
        return value["samples"]
    return value


NODE_CLASS_MAPPINGS = {
    "PackEncode": PackEncode,
    "PackClipSkip": PackClipSkip,
    "PackCheckpoint": PackCheckpoint,
    "PackDecodeTiled": PackDecodeTiled,
    "PackEncodeDecode": PackEncodeDecode,
    "PackTiledUpscale": PackTiledUpscale,
    "PackCompare": PackCompare,
}
NODE_DISPLAY_NAME_MAPPINGS = {"PackEncode": "Pack Encode"}
