"""ComfyUI's import surface for custom node packs, as thin adapters over Loom's own API.

`shims/` holds top-level modules named as in ComfyUI (`folder_paths`, `comfy.*`, `comfy_api`,
`comfy_extras`, `comfy_execution`, `server`, `node_helpers`, `latent_preview`, `execution`).
`install()` puts that folder on `sys.path` before packs load, so `import folder_paths` in a pack
reaches Loom's folders, `ProgressBar` reaches the running node's context and `PromptServer.instance`
reaches Loom's server. ComfyUI's `nodes` module is Loom's own `nodes` package, which answers
ComfyUI's names (`nodes.SaveImage`, `nodes.NODE_CLASS_MAPPINGS`, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SHIMS = Path(__file__).resolve().parent / "shims"

# Top-level modules of ComfyUI itself: a pack that fails to import one of these (or a name from one)
# has found a gap in Loom's compatibility, not a dependency it forgot to list.
COMFY_MODULES = frozenset(
    {
        "comfy", "comfy_extras", "comfy_api", "comfy_api_nodes", "comfy_execution", "comfy_config",
        "nodes", "server", "folder_paths", "node_helpers", "latent_preview", "execution", "app",
        "protocol", "comfyui_version", "cuda_malloc", "hook_breaker_ac10a0", "new_updater", "main",
        "utils", "middleware", "api_server",
    }
)  # fmt: skip

# Node id -> class of every pack node registered in this process, for `nodes.NODE_CLASS_MAPPINGS`
# (ComfyUI adds custom nodes to that dict as they load; packs look each other's nodes up there).
pack_classes: dict[str, Any] = {}
# Pack name -> its web folder (`nodes.EXTENSION_WEB_DIRS`, which ComfyUI fills as packs load).
extension_web_dirs: dict[str, str] = {}


def install() -> None:
    """Make the shim modules importable (idempotent); first on the path, so that an unrelated installed
    module of the same name (`server`) cannot shadow them."""
    if str(SHIMS) not in sys.path:
        sys.path.insert(0, str(SHIMS))


def record_pack_node(node_id: str, cls: Any) -> None:
    pack_classes[node_id] = cls
    mappings = (
        sys.modules.get("nodes").__dict__.get("NODE_CLASS_MAPPINGS") if "nodes" in sys.modules else None
    )
    if isinstance(mappings, dict):
        mappings.setdefault(node_id, cls)


def missing_comfy_name(exc: BaseException) -> str | None:
    """`comfy.foo` or `name from comfy.foo` when an import failed on a part of ComfyUI; else None."""
    if isinstance(exc, ImportError) and exc.name:
        if exc.name.split(".")[0] not in COMFY_MODULES:
            return None
        if isinstance(exc, ModuleNotFoundError):
            return f"ComfyUI's module {exc.name!r}"
        missing = str(exc).split("'")[1] if str(exc).startswith("cannot import name '") else None
        return (
            f"{missing!r} from ComfyUI's module {exc.name!r}" if missing else f"ComfyUI's module {exc.name!r}"
        )
    owner = getattr(exc, "obj", None)
    if isinstance(exc, AttributeError) and exc.name and isinstance(owner, ModuleType):
        module = owner.__name__
        if module.split(".")[0] in COMFY_MODULES:
            return f"{exc.name!r} of ComfyUI's module {module!r}"
    return None
