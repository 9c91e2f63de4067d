"""Flux.2 (dev and Klein) as a MODEL: diffusers' `Flux2Transformer2DModel` called as ComfyUI calls its Flux.2.

The latent is already patchified by the VAE (128 channels at 1/16 of the image), so each latent pixel is
one token, with 4-D position ids (frame, row, column, text position): the image's are (0, row, column,
0), the prompt's (0, 0, 0, n). The prompt's sequence is zero-padded at the front to 512 tokens as
ComfyUI's Flux2 does (Flux.2 dev's Mistral prompt is unpadded; Klein's Qwen3 prompt is already 512).
The timestep is sigma (the network scales it by 1000); Flux.2 dev embeds the conditioning's guidance
(FluxGuidance, 3.5 when unset; FluxDisableGuidance leaves it out), Klein has no guidance input.

Reference latents (ReferenceLatent: Flux.2's edits) become extra tokens after the image's, the n-th in
frame 10·n at the origin (ComfyUI's and diffusers' "index" placement with scale 10); only the image's
tokens are kept from the output.

With FluxKVCache (`transformer_options["flux2_kv_cache"]`, a `ReferenceKVCache`), the references run as
diffusers' Flux.2 Klein KV pipeline runs them: on the first call for a set of references their tokens go
first, modulated as at timestep 0 and attending only to themselves, and their keys and values of every
block are kept; later calls (the other steps, the other conditioning) run the image tokens alone against
those cached keys and values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.diffusion.batching import reference_shapes, stacked_references
from engine.diffusion.flow_base import FluxFamily, entry_guidance
from engine.diffusion.flow_tokens import axes4_ids, pixel_latent, pixel_tokens, text_ids4

TEXT_TOKENS = 512
REFERENCE_FRAME_STEP = 10
KV_OPTION = "flux2_kv_cache"


class ReferenceKVCache:
    """The reference tokens' keys and values per set of reference latents (FluxKVCache). An entry is found
    by the identity of the conditioning's reference tensors (kept alive with it, so their ids cannot be
    reused), the batch and the guidance; the last few entries are kept."""

    KEEP = 2

    def __init__(self) -> None:
        self.entries: list[tuple[tuple[Any, ...], list[Any], Any]] = []

    def find(self, key: tuple[Any, ...], sources: list[Any]) -> Any:
        for own_key, own_sources, cache in self.entries:
            if own_key == key and all(a is b for a, b in zip(own_sources, sources, strict=True)):
                return cache
        return None

    def add(self, key: tuple[Any, ...], sources: list[Any], cache: Any) -> None:
        self.entries = [*self.entries[-(self.KEEP - 1) :], (key, list(sources), cache)]

    def __deepcopy__(self, memo: dict[int, Any]) -> ReferenceKVCache:
        return ReferenceKVCache()  # a cloned model starts with no cached references


class Flux2(FluxFamily):
    """Flux.2 dev and Klein (4B, 9B; base and distilled)."""

    NAME = "Flux.2"

    def condition_key(self, entry: dict[str, Any]) -> tuple[Any, ...]:
        """Entries batch together only with reference latents of the same shapes (token counts)."""
        return reference_shapes(entry)

    def added_conditions(self, entries: list[dict[str, Any]], crop: Any, batch: int) -> dict[str, Any]:
        """Each entry's guidance (NaN: disabled) and reference latents, repeated over the batch."""
        methods = {entry.get("reference_latents_method") or "index" for entry in entries}
        if methods != {"index"}:
            raise ValueError(
                f"reference_latents_method {sorted(methods - {'index'})[0]!r} is not supported for Flux.2 in "
                "Loom: its references are placed by index (frame 10·n); FluxKVCache runs them at timestep 0"
            )
        references = [entry.get("reference_latents") or [] for entry in entries]
        stacked = stacked_references(entries, batch, self.process_latent_in, crop.device)
        sources = [latent for refs in references for latent in refs]
        return {
            "guidance": entry_guidance(entries, batch, crop.device),
            "ref_latents": stacked,
            "ref_sources": sources,
        }

    def _check_conditioning(self, context: Any, pooled: Any) -> None:
        width = int(self.diffusion_model.config.joint_attention_dim)
        if context.shape[-1] != width:
            raise ValueError(
                f"this Flux.2 model takes text conditioning {width} wide, but got {context.shape[-1]}: "
                "encode the prompt with this model's text encoder (CLIPLoader type flux2: Mistral Small 3 "
                "for Flux.2 dev, Qwen3 4B for Klein 4B, Qwen3 8B for Klein 9B)"
            )

    def _network(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        extra: dict[str, Any],
        control: Any,
        options: dict[str, Any],
    ) -> Any:
        """With FluxKVCache, the sources of the references (to find their cached keys and values) travel
        in transformer_options."""
        if extra.get("ref_latents") and isinstance(options.get(KV_OPTION), ReferenceKVCache):
            options = {**options, "flux2_reference_sources": extra.get("ref_sources") or []}
        return super()._network(x, timestep, context, extra, control, options)

    def _flux_call(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        y: Any,
        guidance: Any,
        ref_latents: Any,
        options: dict[str, Any],
        **kwargs: Any,
    ) -> Any:
        """Flux.2's call (no pooled vector `y`): rows whose guidance is disabled run without the guidance
        embedding; with FluxKVCache the references' keys and values are extracted once, then reused."""
        import torch

        store, sources = options.get(KV_OPTION), options.get("flux2_reference_sources")
        if ref_latents and isinstance(store, ReferenceKVCache) and sources:
            return self._forward_cached(x, timestep, context, guidance, ref_latents, store, sources)
        if guidance is None or not self.diffusion_model.config.guidance_embeds:
            return self._forward_rows(x, timestep, context, None, ref_latents)
        disabled = guidance.isnan()
        if not bool(disabled.any()):
            return self._forward_rows(x, timestep, context, guidance, ref_latents)
        out = torch.empty_like(x)
        for rows, value in ((disabled, None), (~disabled, guidance)):
            if bool(rows.any()):
                refs = [r[rows] for r in ref_latents] if ref_latents else None
                kept = None if value is None else value[rows]
                out[rows] = self._forward_rows(x[rows], timestep[rows], context[rows], kept, refs)
        return out

    def _forward_rows(self, x: Any, timestep: Any, context: Any, guidance: Any, refs: Any) -> Any:
        import torch

        height, width = x.shape[-2:]
        tokens, img_ids = pixel_tokens(x), axes4_ids(height, width, x, x.dtype)
        ref_tokens, ref_ids = _reference_tokens(refs or [], x)
        if ref_tokens is not None:
            tokens, img_ids = torch.cat([tokens, ref_tokens], dim=1), torch.cat([img_ids, ref_ids])
        context, txt_ids = _text(context, x)
        out = self.diffusion_model(
            hidden_states=tokens,
            encoder_hidden_states=context,
            timestep=timestep.to(x.dtype),
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=None if guidance is None else guidance.to(x.dtype),
            return_dict=False,
        )[0]
        return pixel_latent(out[:, : height * width], height, width)

    def _forward_cached(
        self,
        x: Any,
        timestep: Any,
        context: Any,
        guidance: Any,
        refs: list[Any],
        store: ReferenceKVCache,
        sources: list[Any],
    ) -> Any:
        """One call with FluxKVCache: the references' keys and values extracted once, then reused."""
        import torch

        batch, _, height, width = x.shape
        use_guidance = guidance is not None and self.diffusion_model.config.guidance_embeds
        guidance = guidance.nan_to_num(0.0).to(x.dtype) if use_guidance else None
        key = (batch, None if guidance is None else tuple(guidance.tolist()))
        tokens, img_ids = pixel_tokens(x), axes4_ids(height, width, x, x.dtype)
        context, txt_ids = _text(context, x)
        common = {
            "encoder_hidden_states": context,
            "timestep": timestep.to(x.dtype),
            "txt_ids": txt_ids,
            "guidance": guidance,
            "return_dict": False,
        }
        cache = store.find(key, sources)
        with _kv_processors(self.diffusion_model):
            if cache is None:
                ref_tokens, ref_ids = _reference_tokens(refs, x)
                out, cache = self.diffusion_model(
                    hidden_states=torch.cat([ref_tokens, tokens], dim=1),
                    img_ids=torch.cat([ref_ids, img_ids]),
                    kv_cache_mode="extract",
                    num_ref_tokens=ref_tokens.shape[1],
                    ref_fixed_timestep=0.0,
                    **common,
                )
                store.add(key, sources, cache)
            else:
                out = self.diffusion_model(
                    hidden_states=tokens, img_ids=img_ids, kv_cache=cache, kv_cache_mode="cached", **common
                )[0]
        return pixel_latent(out, height, width)


def _reference_tokens(refs: list[Any], x: Any) -> tuple[Any, Any]:
    """The references' tokens [B, n, C] and ids [n, 4] (frame 10·n), or (None, None) without any."""
    import torch

    if not refs:
        return None, None
    tokens, ids = [], []
    for index, ref in enumerate(refs, start=1):
        ref = ref.to(x.device, x.dtype)
        tokens.append(pixel_tokens(ref))
        ids.append(axes4_ids(ref.shape[-2], ref.shape[-1], x, x.dtype, frame=REFERENCE_FRAME_STEP * index))
    return torch.cat(tokens, dim=1), torch.cat(ids)


def _text(context: Any, x: Any) -> tuple[Any, Any]:
    """The prompt zero-padded at the front to 512 tokens, and its ids (0, 0, 0, n)."""
    import torch

    if context.shape[1] < TEXT_TOKENS:
        context = torch.nn.functional.pad(context, (0, 0, TEXT_TOKENS - context.shape[1], 0))
    return context.to(x.dtype), text_ids4(context.shape[1], x, x.dtype)


@contextmanager
def _kv_processors(transformer: Any) -> Iterator[None]:
    """diffusers' KV-cache attention processors for one call (they take the cache arguments)."""
    from diffusers.models.transformers.transformer_flux2 import (
        Flux2KVAttnProcessor,
        Flux2KVParallelSelfAttnProcessor,
    )

    blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    saved = [block.attn.processor for block in blocks]
    for block in transformer.transformer_blocks:
        block.attn.set_processor(Flux2KVAttnProcessor())
    for block in transformer.single_transformer_blocks:
        block.attn.set_processor(Flux2KVParallelSelfAttnProcessor())
    try:
        yield
    finally:
        for block, processor in zip(blocks, saved, strict=True):
            block.attn.set_processor(processor)
