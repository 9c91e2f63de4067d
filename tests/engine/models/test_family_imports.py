"""The flow families' model modules import neither torch, diffusers nor transformers (start-up and
validation stay fast); they import them inside the functions that build models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODULES = (
    "flow_families", "sd3", "flux", "chroma", "zimage", "qwen_image", "qwen_vae", "llm_encoders",
    "text_encoders", "lazy_view", "flow_fill", "tokenizer.qwen", "tokenizer.t5",
)  # fmt: skip


def test_family_modules_import_light() -> None:
    imports = ", ".join(f"engine.models.{m}" for m in MODULES)
    heavy = "('torch', 'diffusers', 'transformers')"
    code = f"import sys, {imports}; print(sorted(m for m in {heavy} if m in sys.modules))"
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
