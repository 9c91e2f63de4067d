"""ComfyUI's import surface for custom node packs, as thin adapters over Loom's own API.

`shims/` holds top-level modules named as in ComfyUI (`folder_paths`, `comfy.utils`,
`comfy.model_management`, `comfy.sd`, `comfy.lora`, `comfy.latent_formats`, `comfy.sd1_clip`,
`comfy.sd2_clip`, `comfy.sdxl_clip`, `comfy.ops`, `comfy.cli_args`, `comfy.comfy_types`,
`comfy_execution.graph_utils`, `comfy_execution.graph`, `server`). `install()` puts that folder on
`sys.path` before packs load, so `import folder_paths` in a pack reaches Loom's folders,
`ProgressBar` reaches the running node's context and `PromptServer.instance` reaches Loom's server.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "shims"


def install() -> None:
    """Make the shim modules importable (idempotent); first on the path, so that an unrelated installed
    module of the same name (`server`) cannot shadow them."""
    if str(SHIMS) not in sys.path:
        sys.path.insert(0, str(SHIMS))
