"""Tiny random-weight Flux.2 stand-ins in ComfyUI's file layouts, written by the tests: the transformer under
its reference names (`double_blocks.N.img_attn.qkv`, `single_blocks.N.linear1`, shared modulations), Qwen3
text encoders in transformers' causal-LM layout deep enough for Klein's layers 9, 18 and 27, and the VAE in
the original layout with its batch-norm statistics (full-size decoder, or a narrower one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import _save
from tests.nodes.flow_fixtures_new import QWEN_VOCAB, _randomize

KLEIN_TE_LAYERS = 28  # Klein reads the inputs of layers 9, 18 and 27


def tiny_flux2_transformer(seed: int, joint: int, guidance: bool = False) -> Any:
    """One double and one single block of one 128-wide head; `guidance`: Flux.2 dev's guidance input."""
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(seed)
    model = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=joint,
        guidance_embeds=guidance,
    )
    return _randomize(model, seed)


_DOUBLE = {
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.linear_in": "img_mlp.0",
    "ff.linear_out": "img_mlp.2",
    "ff_context.linear_in": "txt_mlp.0",
    "ff_context.linear_out": "txt_mlp.2",
}
_DOUBLE_NORMS = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}
_SINGLE = {
    "attn.to_qkv_mlp_proj.weight": "linear1.weight",
    "attn.to_out.weight": "linear2.weight",
    "attn.norm_q.weight": "norm.query_norm.scale",
    "attn.norm_k.weight": "norm.key_norm.scale",
}
_TOP = {
    "x_embedder.weight": "img_in.weight",
    "context_embedder.weight": "txt_in.weight",
    "proj_out.weight": "final_layer.linear.weight",
    "double_stream_modulation_img.linear.weight": "double_stream_modulation_img.lin.weight",
    "double_stream_modulation_txt.linear.weight": "double_stream_modulation_txt.lin.weight",
    "single_stream_modulation.linear.weight": "single_stream_modulation.lin.weight",
    "time_guidance_embed.timestep_embedder.linear_1.weight": "time_in.in_layer.weight",
    "time_guidance_embed.timestep_embedder.linear_2.weight": "time_in.out_layer.weight",
    "time_guidance_embed.guidance_embedder.linear_1.weight": "guidance_in.in_layer.weight",
    "time_guidance_embed.guidance_embedder.linear_2.weight": "guidance_in.out_layer.weight",
}


def flux2_to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' Flux.2 names → the reference ones ComfyUI's files use (fused qkv, shift before scale)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _TOP:
            out[_TOP[key]] = value
        elif key == "norm_out.linear.weight":
            scale, shift = value.chunk(2)
            out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale])
        elif key.startswith("single_transformer_blocks."):
            _, index, rest = key.split(".", 2)
            out[f"single_blocks.{index}.{_SINGLE[rest]}"] = value
        elif key.startswith("transformer_blocks."):
            _, index, rest = key.split(".", 2)
            name = rest.rsplit(".", 1)[0]
            base = f"double_blocks.{index}."
            if name in _DOUBLE:
                out[base + _DOUBLE[name] + ".weight"] = value
            elif name in _DOUBLE_NORMS:
                out[base + _DOUBLE_NORMS[name] + ".scale"] = value
            elif name == "attn.to_q":
                parts = [state[f"transformer_blocks.{index}.attn.to_{c}.weight"] for c in "qkv"]
                out[base + "img_attn.qkv.weight"] = torch.cat(parts)
            elif name == "attn.add_q_proj":
                parts = [state[f"transformer_blocks.{index}.attn.add_{c}_proj.weight"] for c in "qkv"]
                out[base + "txt_attn.qkv.weight"] = torch.cat(parts)
            elif name not in ("attn.to_k", "attn.to_v", "attn.add_k_proj", "attn.add_v_proj"):
                raise KeyError(key)
        else:
            raise KeyError(key)
    return out


def tiny_klein_text_encoder(seed: int, hidden: int = 32) -> Any:
    """A Qwen3 language model (q/k norms) of the full vocabulary, 28 tiny layers."""
    from transformers import Qwen3Config, Qwen3Model

    from engine.diffusion.llm_encoder import LLMEncoder

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=QWEN_VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=KLEIN_TE_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
    )
    return _randomize(LLMEncoder(Qwen3Model(config)), seed, 0.1)


def tiny_flux2_vae(seed: int, decoder: tuple[int, ...] | None = None) -> Any:
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(
        block_out_channels=(32, 32, 64, 64) if decoder else (32, 32, 32, 32),
        decoder_block_out_channels=decoder,
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=32,
    ).eval()
    with torch.no_grad():
        vae.bn.running_mean.normal_(0, 0.1)
        vae.bn.running_var.uniform_(0.5, 2.0)
    return vae


def flux2_vae_file_state(vae: Any) -> dict[str, torch.Tensor]:
    """The original (LDM) layout with the batch-norm statistics beside it, as flux2-vae.safetensors."""
    from engine.models.keymap import vae_to_original

    state = {k: v for k, v in vae.state_dict().items() if not k.startswith("bn.")}
    out = {k: v.contiguous() for k, v in vae_to_original(state, vae.config).items()}
    out["bn.running_mean"] = vae.bn.running_mean.clone()
    out["bn.running_var"] = vae.bn.running_var.clone()
    return out


def write_klein_files(models: Path) -> dict[str, Any]:
    """Klein 4B's files (transformer, Qwen3 text encoder, VAE, and a narrower-decoder VAE)."""
    from tests.nodes.flow_fixtures_new import qwen_file_state

    text = tiny_klein_text_encoder(31)
    transformer = tiny_flux2_transformer(32, joint=3 * text.config.hidden_size)
    vae = tiny_flux2_vae(33)
    small = tiny_flux2_vae(34, decoder=(32, 32, 32, 32))
    _save(
        models / "diffusion_models" / "flux-2-klein-4b.safetensors", flux2_to_comfy(transformer.state_dict())
    )
    _save(models / "text_encoders" / "qwen_3_4b.safetensors", qwen_file_state(text), torch.bfloat16)
    _save(models / "vae" / "flux2-vae.safetensors", flux2_vae_file_state(vae), None)
    _save(models / "vae" / "full_encoder_small_decoder.safetensors", flux2_vae_file_state(small), None)
    return {"transformer": transformer, "text": text, "vae": vae, "small_vae": small}


def klein_workflow(seed: int = 1, steps: int = 2, cfg: float = 1.0, edit: bool = False) -> dict[str, Any]:
    """ComfyUI's Klein template graph (custom sampling): UNETLoader, CLIPLoader type flux2, VAELoader,
    EmptyFlux2LatentImage, Flux2Scheduler, CFGGuider; `edit`: the reference image through ReferenceLatent
    on both conditionings."""

    def node(cls: str, **inputs: Any) -> dict[str, Any]:
        return {"class_type": cls, "inputs": inputs}

    prompt: dict[str, Any] = {
        "1": node("UNETLoader", unet_name="flux-2-klein-4b.safetensors", weight_dtype="default"),
        "2": node("CLIPLoader", clip_name="qwen_3_4b.safetensors", type="flux2", device="default"),
        "3": node("VAELoader", vae_name="flux2-vae.safetensors"),
        "5": node("CLIPTextEncode", text="a red circle on white", clip=["2", 0]),
        "6": node("ConditioningZeroOut", conditioning=["5", 0]),
        "7": node("EmptyFlux2LatentImage", width=64, height=48, batch_size=1),
        "8": node("Flux2Scheduler", steps=steps, width=64, height=48),
        "9": node("KSamplerSelect", sampler_name="euler"),
        "10": node("RandomNoise", noise_seed=seed),
        "11": node("CFGGuider", model=["1", 0], positive=["5", 0], negative=["6", 0], cfg=cfg),
        "12": node(
            "SamplerCustomAdvanced",
            noise=["10", 0],
            guider=["11", 0],
            sampler=["9", 0],
            sigmas=["8", 0],
            latent_image=["7", 0],
        ),
        "13": node("VAEDecode", samples=["12", 0], vae=["3", 0]),
        "14": node("SaveImage", images=["13", 0], filename_prefix="klein"),
    }
    if edit:
        prompt["20"] = node("EmptyImage", width=32, height=32, batch_size=1, color=0xFF0000)
        prompt["21"] = node("VAEEncode", pixels=["20", 0], vae=["3", 0])
        prompt["22"] = node("ReferenceLatent", conditioning=["5", 0], latent=["21", 0])
        prompt["23"] = node("ReferenceLatent", conditioning=["6", 0], latent=["21", 0])
        prompt["11"]["inputs"].update(positive=["22", 0], negative=["23", 0])
    return prompt


# --- Flux.2 dev: Mistral Small 3 --------------------------------------------------------------------

# The split pattern of Mistral's tekken.json (the one ComfyUI's tekken reader accepts).
TEKKEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Mistral's control tokens at their ids (the rest of the first 1000 ids are <SPECIAL_n> fillers).
TEKKEN_SPECIALS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
    "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
)  # fmt: skip
TEKKEN_WORDS = (
    " the", " a", " red", " circle", " on", " white", "You", " are", " an", "AI", " that", " reasons",
    " about", " image", " descriptions", " give", " structured", " responses", " focusing", " object",
    " relationships", "attribution", " and", " actions", " without", " speculation", "ing", " fox", "123",
)  # fmt: skip
MISTRAL_TE_LAYERS = 31  # Flux.2 dev reads the inputs of layers 10, 20 and 30


def tiny_tekken() -> bytes:
    """A tekken.json in Mistral's format: 1000 special ids, then the 256 bytes and the prefixes of a few
    words as BPE tokens ranked by length (so each is the merge of a shorter token and one byte)."""
    import base64
    import json

    tokens = [bytes([b]) for b in range(256)]
    longer = {word.encode()[:n] for word in TEKKEN_WORDS for n in range(2, len(word.encode()) + 1)}
    tokens += sorted(longer, key=lambda t: (len(t), t))
    data = {
        "config": {
            "pattern": TEKKEN_PATTERN,
            "num_vocab_tokens": len(tokens),
            "default_vocab_size": 131072,
            "default_num_special_tokens": 1000,
            "version": "v7",
        },
        "vocab": [
            {"rank": rank, "token_bytes": base64.b64encode(token).decode(), "token_str": None}
            for rank, token in enumerate(tokens)
        ],
        "special_tokens": [
            {"rank": rank, "token_str": text, "is_control": True}
            for rank, text in enumerate(TEKKEN_SPECIALS + tuple(f"<SPECIAL_{i}>" for i in range(20, 1000)))
        ],
    }
    return json.dumps(data).encode()


def tiny_mistral_text_encoder(seed: int, hidden: int = 32) -> Any:
    from transformers import MistralConfig, MistralModel

    from engine.diffusion.llm_encoder import LLMEncoder

    torch.manual_seed(seed)
    config = MistralConfig(
        vocab_size=131072,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=MISTRAL_TE_LAYERS,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=128,
        rms_norm_eps=1e-5,
        rope_theta=1_000_000_000.0,
        tie_word_embeddings=False,
    )
    return _randomize(LLMEncoder(MistralModel(config)), seed, 0.1)


def write_flux2_dev_files(models: Path) -> dict[str, Any]:
    """Flux.2 dev's transformer (with its guidance input) and the Mistral text encoder, whose file carries
    the tokenizer as ComfyUI's does (`tekken_model`: the bytes of tekken.json)."""
    from tests.nodes.flow_fixtures_new import qwen_file_state

    text = tiny_mistral_text_encoder(51)
    transformer = tiny_flux2_transformer(52, joint=3 * text.config.hidden_size, guidance=True)
    state = qwen_file_state(text) | {
        "tekken_model": torch.frombuffer(bytearray(tiny_tekken()), dtype=torch.uint8)
    }
    _save(models / "diffusion_models" / "flux2_dev.safetensors", flux2_to_comfy(transformer.state_dict()))
    _save(models / "text_encoders" / "mistral_3_small_flux2_bf16.safetensors", state, torch.bfloat16)
    return {"transformer": transformer, "text": text}
