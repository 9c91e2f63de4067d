"""alibaba-pai's Qwen-Image Fun ControlNets (`Qwen-Image-2512-Fun-Controlnet-Union`), as newer ComfyUI runs
them (its ControlNetLoader loads the file; Apply ControlNet attaches it to the conditioning).

The file holds `control_img_in` (the packed hint latent → the model's width) and a few Qwen-Image
transformer blocks (`control_blocks.N`, diffusers' block layout) with a `before_proj` on the first and
an `after_proj` on each. Unlike InstantX's Qwen-Image ControlNet it has no embedders of its own: it runs
on the sampled model's — the image tokens through the model's `img_in`, the prompt through its
`txt_norm`/`txt_in`, the timestep embedding and the rotary positions of the model. The first control
block takes `before_proj(control_img_in(hint)) + img_in(x)`, each further block the previous one's
image output; the text stream threads through the control blocks on its own (no mask). Each block's
`after_proj` of its image output is a residual the sampled model adds to its image tokens after block
0, 12, 24, 36 and 48 (ComfyUI's injection layers, for the released 60-block model).

The hint is the control image's 16-channel latent; the checkpoints are trained on 33 channels (control
latent, mask, inpaint latent), and Apply ControlNet gives neither mask nor inpaint latent, so those are
zeros, as in ComfyUI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

INJECTION_LAYERS = (0, 12, 24, 36, 48)
MAIN_BLOCKS = 60


def _count_blocks(state: Mapping[str, Any]) -> int:
    indices = {int(k.split(".")[1]) for k in state if k.startswith("control_blocks.")}
    return max(indices) + 1 if indices else 0


class QwenFunControlBlock(torch.nn.Module):
    """One control block: a diffusers Qwen-Image transformer block plus its projections (kept as
    siblings so the file's `control_blocks.N.attn.…` names load unchanged)."""

    def __init__(self, dim: int, heads: int, head_dim: int, first: bool) -> None:
        from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock

        super().__init__()
        self.block = QwenImageTransformerBlock(
            dim=dim, num_attention_heads=heads, attention_head_dim=head_dim
        )
        self.before_proj: torch.nn.Linear | None = torch.nn.Linear(dim, dim) if first else None
        self.after_proj = torch.nn.Linear(dim, dim)

    def load_file_state(self, state: Mapping[str, Any], prefix: str) -> list[str]:
        """Load this block's tensors from the file's state; the names of those missing or unexpected."""
        mine = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        block_state = {k: v for k, v in mine.items() if not k.startswith(("before_proj.", "after_proj."))}
        missing, unexpected = self.block.load_state_dict(block_state, strict=False)
        problems = [prefix + k for k in [*missing, *unexpected]]
        for name in ("before_proj", "after_proj"):
            module = getattr(self, name)
            if module is None:
                continue
            weights = {k.split(".", 1)[1]: v for k, v in mine.items() if k.startswith(name + ".")}
            missing, unexpected = module.load_state_dict(weights, strict=False)
            problems += [f"{prefix}{name}.{k}" for k in [*missing, *unexpected]]
        return problems


class QwenFunControl(torch.nn.Module):
    """The Fun ControlNet's network: forward returns ComfyUI's control dict, 60 entries of `"input"`
    with the residuals at the injection layers and None elsewhere."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        super().__init__()
        inner, features = state["control_img_in.weight"].shape
        head_dim = int(state["control_blocks.0.attn.norm_q.weight"].shape[0])
        if inner % head_dim:
            raise ValueError(f"control blocks {inner} wide do not split into heads of {head_dim}")
        self.width = int(inner)
        self.control_img_in = torch.nn.Linear(features, inner)
        self.control_blocks = torch.nn.ModuleList(
            QwenFunControlBlock(inner, inner // head_dim, head_dim, first=i == 0)
            for i in range(_count_blocks(state))
        )
        self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        from .controlnet import weights_dtype

        problems = []
        missing, unexpected = self.control_img_in.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("control_img_in.")}, strict=False
        )
        problems += [f"control_img_in.{k}" for k in [*missing, *unexpected]]
        for index, block in enumerate(self.blocks()):
            problems += block.load_file_state(state, f"control_blocks.{index}.")
        known = ("control_img_in.", "control_blocks.")
        problems += [k for k in state if not k.startswith(known)]
        if problems:
            raise ValueError(f"not a Qwen-Image Fun ControlNet layout: keys {problems[:4]}")
        self.to(weights_dtype()).eval()

    def blocks(self) -> list[QwenFunControlBlock]:
        return [block for block in self.control_blocks if isinstance(block, QwenFunControlBlock)]

    def hint_tokens(self, hint: Any) -> Any:
        """The packed hint: 16-channel latents get zero mask and inpaint channels (33 in all, what the
        checkpoints take), then 2×2 patches; other widths are padded or cut to the input features."""
        from engine.diffusion.flow_tokens import pack

        features = self.control_img_in.in_features
        if hint.shape[1] == 16 and features == 33 * 4:
            hint = torch.cat([hint, torch.zeros_like(hint[:, :17])], dim=1)
        tokens = pack(hint)[0]
        if tokens.shape[-1] < features:
            tokens = torch.nn.functional.pad(tokens, (0, features - tokens.shape[-1]))
        return tokens[..., :features]

    def check_main_model(self, main: Any, name: str) -> None:
        """The sampled model must be a Qwen-Image model (not Layered) as wide as the control blocks."""
        from engine.diffusion.qwen_layers import is_layered

        width = getattr(getattr(main, "img_in", None), "out_features", None)
        if width != self.width:
            raise ValueError(
                f"the ControlNet {name}: this Qwen-Image Fun ControlNet is {self.width} wide; the Qwen-Image "
                f"model being sampled is {width} wide: it was made for another model"
            )
        if is_layered(main):
            raise ValueError(
                f"the ControlNet {name}: a Qwen-Image Fun ControlNet controls Qwen-Image and Qwen-Image Edit "
                "models, not Qwen-Image Layered"
            )

    def forward(
        self, x: Any, timestep: Any, context: Any, hint: Any, added: dict[str, Any], extra: Any, main: Any
    ) -> dict[str, Any]:
        from engine.diffusion.flow_tokens import pack

        # The sampled model's embedders, as its own forward runs them (inputs in the compute dtype).
        tokens, rows, cols = pack(x)
        image = main.img_in(tokens)
        control = self.control_img_in(self.hint_tokens(hint).to(x.dtype))
        count = min(control.shape[1], image.shape[1])
        control, image = control[:, :count], image[:, :count]
        text = main.txt_in(main.txt_norm(context.to(x.dtype)))
        temb = main.time_text_embed(timestep.to(x.dtype), image)
        rotary = main.pos_embed(
            [[(1, rows, cols)]] * x.shape[0], max_txt_seq_len=context.shape[1], device=x.device
        )
        residuals: list[Any] = [None] * MAIN_BLOCKS
        state = control
        for index, block in enumerate(self.blocks()):
            if block.before_proj is not None:
                state = block.before_proj(state) + image
            text, state = block.block(
                hidden_states=state,
                encoder_hidden_states=text,
                encoder_hidden_states_mask=None,
                temb=temb,
                image_rotary_emb=rotary,
            )
            if index < len(INJECTION_LAYERS):
                residuals[INJECTION_LAYERS[index]] = block.after_proj(state)
        return {"input": residuals}
