"""TextGenerate (ComfyUI's newer `comfy_extras.nodes_textgen`, not in 0.3.64): text from a CLIP's language
model, e.g. a prompt enhancer rewriting the prompt before an image model reads it.

`sampling_mode` is a DynamicCombo: "on" samples with `sampling_mode.temperature`, `.top_k`, `.top_p`,
`.min_p`, `.repetition_penalty`, `.seed` and `.presence_penalty`; "off" is greedy. The prompt is put in
Qwen's chat template (with the system prompt when one is given, and an empty think block unless
`thinking`), unless `use_default_template` is off. Loom generates with the Qwen language models it loads
(Qwen3, Qwen3-VL's and Qwen2.5-VL's language models); image, video and audio inputs are not read yet.
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Clip, Image, Input, Node, Output, Socket

Audio = Annotated[Any, Socket("AUDIO")]
SAMPLING_MODES = ("on", "off")
# Newer ComfyUI's `mtp` (saved after use_default_template); a speed-up that Loom does not do.
MTP_CHOICES = ("auto", "off", "2", "3", "4", "5")
NODE = "TextGenerate"


def _sub(description: str, name: str, default: Any, **limits: Any) -> Input:
    return Input(
        description, name=f"sampling_mode.{name}", shown_for=("on",), extra={"default": default}, **limits
    )


def chat_text(prompt: str, system_prompt: str, thinking: bool, template: bool) -> str:
    """The text the language model continues."""
    if not template:
        return prompt
    system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
    think = "" if thinking else "<think>\n\n</think>\n\n"
    return f"{system}<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{think}"


def _language_model(clip: Any) -> Any:
    from engine.diffusion.llm_encoder import LLMEncoder

    for encoder in getattr(clip, "encoders", ()):
        if isinstance(encoder, LLMEncoder):
            return encoder
    family = getattr(clip, "family", type(clip).__name__)
    raise ValueError(f"{NODE}: input 'clip' holds no language model Loom can generate with (a {family} CLIP)")


class TextGenerate(Node):
    """Generate text with the language model of a CLIP."""

    display_name = "Generate Text"
    category = "text"

    def run(
        self,
        clip: Annotated[Clip, Input("A CLIP whose text encoder is a language model.")],
        prompt: Annotated[str, Input("What to ask.", multiline=True, extra={"dynamicPrompts": True})] = "",
        max_length: Annotated[int, Input("Most new tokens.", min=1, max=32768)] = 512,
        sampling_mode: Annotated[str, Input("on: sample; off: greedy.", choices=SAMPLING_MODES)] = "on",
        temperature: Annotated[
            float | None, _sub("Sampling temperature.", "temperature", 0.7, min=0.01, max=2.0, step=0.000001)
        ] = None,
        top_k: Annotated[
            int | None, _sub("Keep the k likeliest tokens (0: all).", "top_k", 64, min=0, max=1000)
        ] = None,
        top_p: Annotated[
            float | None,
            _sub("Nucleus: keep tokens up to this mass.", "top_p", 0.95, min=0.0, max=1.0, step=0.01),
        ] = None,
        min_p: Annotated[
            float | None,
            _sub(
                "Drop tokens below this share of the likeliest.", "min_p", 0.05, min=0.0, max=1.0, step=0.01
            ),
        ] = None,
        repetition_penalty: Annotated[
            float | None,
            _sub("Penalty for tokens already seen.", "repetition_penalty", 1.05, min=0.0, max=5.0, step=0.01),
        ] = None,
        seed: Annotated[
            int | None, _sub("Seed of the sampling.", "seed", 0, min=0, max=0xFFFFFFFFFFFFFFFF)
        ] = None,
        presence_penalty: Annotated[
            float | None,
            _sub(
                "Subtracted from seen tokens' logits.", "presence_penalty", 0.0, min=0.0, max=5.0, step=0.01
            ),
        ] = None,
        image: Annotated[Image | None, Input("An image to ask about.")] = None,
        video: Annotated[Image | None, Input("Video frames to ask about.")] = None,
        audio: Annotated[Audio | None, Input("Audio to ask about.")] = None,
        system_prompt: Annotated[
            str | None, Input("Instructions before the prompt.", force_input=True)
        ] = None,
        thinking: Annotated[
            bool | None, Input("Let the model reason first (Qwen3's think block).", extra={"default": False})
        ] = None,
        use_default_template: Annotated[
            bool | None, Input("Wrap the prompt in the chat template.", extra={"default": True})
        ] = None,
        mtp: Annotated[
            str | None,
            Input(
                "Multi-token-prediction speculative decoding (a speed-up; Loom decodes one token at a time).",
                choices=MTP_CHOICES,
                extra={"default": "auto"},
            ),
        ] = None,
    ) -> Annotated[str, Output("generated_text")]:
        del mtp  # speculative decoding changes the speed, not what greedy decoding gives
        from engine.diffusion.text_generate import Sampling, generate
        from engine.models.tokenizer import qwen

        for name, value in (("image", image), ("video", video), ("audio", audio)):
            if value is not None:
                raise ValueError(f"{NODE}: input '{name}' is not read by Loom yet; generate from text alone")
        encoder = _language_model(clip)
        settings = Sampling(
            do_sample=sampling_mode == "on",
            temperature=1.0 if temperature is None else temperature,
            top_k=50 if top_k is None else top_k,
            top_p=1.0 if top_p is None else top_p,
            min_p=0.0 if min_p is None else min_p,
            repetition_penalty=1.0 if repetition_penalty is None else repetition_penalty,
            presence_penalty=0.0 if presence_penalty is None else presence_penalty,
            seed=0 if seed is None else seed,
        )
        ids = qwen.encode(
            chat_text(prompt, system_prompt or "", bool(thinking), use_default_template is not False)
        )
        try:
            new = generate(encoder, ids, max_length, settings)
        except ValueError as error:
            raise ValueError(f"{NODE}: input 'clip': {error}") from error
        return str(qwen.tokenizer().decode(new, skip_special_tokens=True))
