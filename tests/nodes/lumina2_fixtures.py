"""Tiny random-weight stand-ins for Lumina Image 2.0 in ComfyUI's file layouts, written by the tests: the
NextDiT under its original names, Gemma 2 in transformers' layout with a small sentencepiece model
embedded as `spiece_model` (as ComfyUI's gemma_2_2b file carries Gemma's), the 16-channel VAE, and the
all-in-one `lumina_2.safetensors` (`model.diffusion_model.`, `text_encoders.gemma2_2b.transformer.`,
`text_encoders.spiece_model`, `vae.`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import _save, tiny_vae16, vae_file_state

# Sentences the test tokenizer is trained on (its pieces cover the prompts the tests use).
CORPUS = [
    "You are an assistant designed to generate superior images with the superior degree of image-text "
    "alignment based on textual prompts or user prompts. <Prompt Start> a red circle on white",
    "You are an assistant designed to generate high-quality images with the highest degree of image-text "
    "alignment based on textual prompts.",
    "a cute anime girl with fennec ears, a blue square on a black background, blurry ugly bad",
    "a green triangle in the middle of a kitchen in a dark victorian mansion with a stained glass window",
]
# Gemma's special ids and their pieces.
GEMMA_IDS = {"pad_id": 0, "eos_id": 1, "bos_id": 2, "unk_id": 3}
GEMMA_PIECES = {"pad_piece": "<pad>", "eos_piece": "<eos>", "bos_piece": "<bos>", "unk_piece": "<unk>"}


def sentencepiece_proto(vocab_size: int = 400) -> bytes:
    """A small sentencepiece model with Gemma's special pieces and normalizer settings (identity, no dummy
    prefix, whitespace kept, digits split, byte fallback), trained on CORPUS (about a second)."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_writer=out,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=False,  # as Gemma's own model
        remove_extra_whitespaces=False,
        split_digits=True,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
        **GEMMA_IDS,
        **GEMMA_PIECES,
    )
    return out.getvalue()


def tiny_gemma(seed: int, vocab: int, hidden: int = 32) -> Any:
    """Gemma 2 (2 layers, 8 heads of 4 channels over 2 key/value heads) as ComfyUI runs it: no soft-capping,
    no sliding window, 1/sqrt(head_dim) attention."""
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    config = Gemma2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=4,
        query_pre_attn_scalar=4,
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        layer_types=["full_attention"] * 2,
        rms_norm_eps=1e-6,
    )
    model = Gemma2Model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.eval()


def gemma_file_state(model: Any, proto: bytes | None) -> dict[str, torch.Tensor]:
    """ComfyUI's gemma_2_2b layout: `model.…` and the tokenizer's bytes as `spiece_model`."""
    state = {"model." + k: v.contiguous() for k, v in model.state_dict().items()}
    if proto is not None:
        state["spiece_model"] = torch.frombuffer(bytearray(proto), dtype=torch.uint8)
    return state


def tiny_lumina2_transformer(seed: int = 0, cap_dim: int = 32) -> Any:
    """A Lumina2Transformer2DModel 48 wide: 2 heads of 24 channels over 1 key/value head, 2 layers."""
    from diffusers import Lumina2Transformer2DModel

    torch.manual_seed(seed)
    model = Lumina2Transformer2DModel(
        hidden_size=48,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        axes_dim_rope=(8, 8, 8),
        axes_lens=(4096, 512, 512),
        cap_feat_dim=cap_dim,
        in_channels=16,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


_BACK = (
    (".attn.to_out.0.", ".attention.out."),
    (".attn.norm_q.", ".attention.q_norm."),
    (".attn.norm_k.", ".attention.k_norm."),
    (".feed_forward.linear_1.", ".feed_forward.w1."),
    (".feed_forward.linear_2.", ".feed_forward.w2."),
    (".feed_forward.linear_3.", ".feed_forward.w3."),
    (".norm1.linear.", ".adaLN_modulation.1."),
    (".norm1.norm.", ".attention_norm1."),
    (".norm2.", ".attention_norm2."),
)
_TOP = {
    "time_caption_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_caption_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_caption_embed.caption_embedder.": "cap_embedder.",
    "norm_out.linear_1.": "final_layer.adaLN_modulation.1.",
    "norm_out.linear_2.": "final_layer.linear.",
}


def lumina2_to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers Lumina 2 names → the original ones (fused qkv, `attention.out`, `attention_norm1`, …)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".attn.to_k." in key or ".attn.to_v." in key:
            continue
        if ".attn.to_q.weight" in key:
            base = key.removesuffix("to_q.weight")
            out[base.replace(".attn.", ".attention.") + "qkv.weight"] = torch.cat(
                [state[f"{base}to_{c}.weight"] for c in "qkv"]
            )
            continue
        new = next((n + key[len(o) :] for o, n in _TOP.items() if key.startswith(o)), key)
        if new.startswith("context_refiner."):
            new = new.replace(".norm1.", ".attention_norm1.")
        for old, replacement in _BACK:
            new = new.replace(old, replacement)
        out[new] = value
    out["norm_final.weight"] = torch.ones(state["x_embedder.weight"].shape[0])  # released, unused
    return out


def write_lumina2_files(models: Path) -> dict[str, Any]:
    """The split files (lumina_2_model_bf16, gemma_2_2b_fp16, ae) and the all-in-one lumina_2 checkpoint."""
    proto = sentencepiece_proto()
    import sentencepiece

    vocab = sentencepiece.SentencePieceProcessor(model_proto=proto).get_piece_size()
    gemma = tiny_gemma(31, vocab)
    transformer = tiny_lumina2_transformer(32, cap_dim=gemma.config.hidden_size)
    vae = tiny_vae16(33)
    diffusion = lumina2_to_comfy(transformer.state_dict())
    text = gemma_file_state(gemma, proto)
    _save(models / "diffusion_models" / "lumina_2_model_bf16.safetensors", diffusion, torch.bfloat16)
    _save(models / "text_encoders" / "gemma_2_2b_fp16.safetensors", text, torch.float16)
    _save(models / "vae" / "ae.safetensors", vae_file_state(vae))
    checkpoint = {"model.diffusion_model." + k: v for k, v in diffusion.items()}
    encoder = "text_encoders.gemma2_2b.transformer."
    checkpoint.update({encoder + k: v for k, v in text.items() if k != "spiece_model"})
    checkpoint["text_encoders.spiece_model"] = text["spiece_model"]
    checkpoint.update({"vae." + k: v for k, v in vae_file_state(vae).items()})
    _save(models / "checkpoints" / "lumina_2.safetensors", checkpoint, torch.bfloat16)
    return {"transformer": transformer, "gemma": gemma, "vae": vae, "proto": proto}


SYSTEM_PROMPT = (
    "You are an assistant designed to generate superior images with the superior degree of image-text "
    "alignment based on textual prompts or user prompts. <Prompt Start> "
)


def checkpoint_workflow(
    seed: int = 1,
    steps: int = 3,
    prompt: str = "a red circle on white",
    checkpoint: str = "lumina_2.safetensors",
    sampler: tuple[str, str] = ("res_multistep", "simple"),
    height: int = 48,
) -> dict[str, Any]:
    """ComfyUI_examples' lumina2 basic example at a tiny size (64 wide): CheckpointLoaderSimple,
    ModelSamplingAuraFlow shift 6, the system prompt before the prompt, res_multistep / simple at cfg 4."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": 6.0}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": SYSTEM_PROMPT + prompt, "clip": ["1", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry ugly bad", "clip": ["1", 1]}},
        "5": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 64, "height": height, "batch_size": 1},
        },
        "6": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 4.0,
                "sampler_name": sampler[0],
                "scheduler": sampler[1],
                "denoise": 1.0,
                "model": ["2", 0],
                "positive": ["3", 0],
                "negative": ["4", 0],
                "latent_image": ["5", 0],
            },
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "lumina2"}},
    }


def split_workflow(seed: int = 1, steps: int = 3) -> dict[str, Any]:
    """The same from the split files: UNETLoader, CLIPLoader type lumina2, VAELoader ae, and
    CLIPTextEncodeLumina2 with its "superior" system prompt."""
    workflow = checkpoint_workflow(seed, steps)
    workflow["1"] = {
        "class_type": "UNETLoader",
        "inputs": {"unet_name": "lumina_2_model_bf16.safetensors", "weight_dtype": "default"},
    }
    workflow["9"] = {
        "class_type": "CLIPLoader",
        "inputs": {"clip_name": "gemma_2_2b_fp16.safetensors", "type": "lumina2", "device": "default"},
    }
    workflow["10"] = {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}
    workflow["3"] = {
        "class_type": "CLIPTextEncodeLumina2",
        "inputs": {"system_prompt": "superior", "user_prompt": "a red circle on white", "clip": ["9", 0]},
    }
    workflow["4"]["inputs"]["clip"] = ["9", 0]
    workflow["7"]["inputs"]["vae"] = ["10", 0]
    return workflow
