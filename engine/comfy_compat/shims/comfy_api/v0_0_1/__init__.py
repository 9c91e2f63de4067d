"""ComfyUI's `comfy_api.v0_0_1`: the same V3 API as `comfy_api.latest` under a pinned version name."""

from comfy_api.latest import (
    ComfyAPI_latest,
    ComfyExtension,
    Input,
    InputImpl,
    Types,
    create_sync_class,
    io,
    ui,
)


class ComfyAPIAdapter_v0_0_1(ComfyAPI_latest):
    VERSION = "0_0_1".replace("_", ".")


ComfyAPI = ComfyAPIAdapter_v0_0_1
ComfyAPISync = create_sync_class(ComfyAPIAdapter_v0_0_1)

__all__ = ["ComfyAPI", "ComfyAPISync", "ComfyExtension", "Input", "InputImpl", "Types", "io", "ui"]
